"""The join's state through the broker: disk (RocksDB) against memory stores, restore times, bytes per event.

    python bench/state.py                  # about 2 minutes on the 2-core VM
    python bench/state.py --events 2000 --pending 2000     # a quick check that everything runs

One local broker (started here; 2 partitions per data topic), one topic prefix per row, exactly-once.
Every worker is ``python -m loopline.cli worker join``, as in bench/broker.py, whose throughput
method this reuses (committed offsets read every 5 ms):

* **throughput**: the features, predictions and labels of ``--events`` events, produced first, drained
  by one join worker with ``LOOPLINE_STATE_BACKEND=disk`` and then ``memory``;
* **restore**: the features and predictions of ``--pending`` events with no label, drained by a
  first worker, which then holds them all; it reports its store sizes (``loopline_state_bytes``)
  and its resident memory, and is stopped (SIGTERM, so its stores are closed cleanly). A second
  worker is started on the same state and its ``loopline_state_restore_seconds`` read: with the
  memory store (everything read back from the changelog), with the disk store of another worker id
  (no local store: the changelog into RocksDB), and with the same worker id (the local store and
  its checkpoint: nothing to read back).

Prints markdown tables; docs/benchmarks.md keeps a run's results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass

from broker import EXACTLY_ONCE, Bench, Progress, Worker, drain_rate, join_inputs, local_bench, produce
from confluent_kafka import TopicPartition

from loopline.metrics import read_metric
from loopline.records import Topic
from loopline.settings import JoinSettings, KafkaSettings


@dataclass
class Restore:
    backend: str
    local: str  # what the second worker finds on disk
    pending: int
    store_bytes: float
    rss_bytes: float
    seconds: float
    records: float


def worker(bench: Bench, case: KafkaSettings, env: dict[str, str], name: str) -> tuple[Worker, int]:
    """A join worker on ``case`` with ``env``, and its metrics port."""
    settings = bench.env(case, **env)
    command = [sys.executable, "-m", "loopline.cli", "worker", "join", "--loglevel", "warning"]
    return Worker(command, settings, bench.work / f"{case.topic_prefix}{name}.log"), int(
        settings["LOOPLINE_METRICS_PORT"]
    )


def wait(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:  # the metrics endpoint is not up yet
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no {what} after {timeout_s:.0f} s")


def throughput(bench: Bench, backend: str, events: int, now: int) -> float:
    """Join events/s with the ``backend`` store."""
    case = bench.case(f"join-{backend}", EXACTLY_ONCE)
    bench.publish_model(case)
    inputs = join_inputs(events, now)
    partitions = []
    for topic, records in inputs.items():
        produce(case, case.topic(topic), records)
        partitions += [TopicPartition(case.topic(topic), p) for p in range(case.partitions)]
    progress = Progress(case, f"{case.topic_prefix}join", partitions)
    state = {"LOOPLINE_STATE_BACKEND": backend, "LOOPLINE_STATE_DIR": str(bench.work / "state")}
    running, _ = worker(bench, case, state, "throughput")
    try:
        rate, _ = drain_rate(progress, 3 * events, running, bench.args.row_timeout)
    finally:
        running.stop()
        progress.close()
    bench.drop(case)
    print(f"  join, {backend} store: {rate / 3:,.0f} events/s", file=sys.stderr, flush=True)
    return rate / 3


def restores(bench: Bench, backend: str, pending: int, now: int) -> list[Restore]:
    """Hold ``pending`` events in a first worker, then time second workers restoring them."""
    case = bench.case(f"restore-{backend}", EXACTLY_ONCE)
    bench.publish_model(case)
    inputs = join_inputs(pending, now)
    partitions = []
    for topic in (Topic.FEATURES, Topic.PREDICTIONS):
        produce(case, case.topic(topic), inputs[topic])
        partitions += [TopicPartition(case.topic(topic), p) for p in range(case.partitions)]
    state = {"LOOPLINE_STATE_BACKEND": backend, "LOOPLINE_STATE_DIR": str(bench.work / f"state-{backend}")}
    first, port = worker(bench, case, state | {"LOOPLINE_KAFKA_WORKER_ID": "first"}, "first")
    progress = Progress(case, f"{case.topic_prefix}join", partitions)
    try:
        drain_rate(progress, 2 * pending, first, bench.args.row_timeout)
        wait(lambda: read_metric(port, "loopline_join_pending") == pending, "report of every event pending")
        store_bytes = read_metric(port, "loopline_state_bytes")
        rss = read_metric(port, "process_resident_memory_bytes")
    finally:
        first.stop()
        progress.close()
    seconds = [("memory", "nothing (memory store)", "second")] if backend == "memory" else [
        ("disk", "no store (another worker id)", "second"), ("disk", "its store and checkpoint", "first")]  # fmt: skip
    results = []
    for _, local, worker_id in seconds:
        second, port = worker(bench, case, state | {"LOOPLINE_KAFKA_WORKER_ID": worker_id}, worker_id)
        try:
            restored = [{"partition": str(p)} for p in range(case.partitions)]
            wait(lambda r=restored, at=port: all(read_metric(at, "loopline_state_restore_seconds", **labels) > 0
                                                 for labels in r), "restore")  # fmt: skip
            took = sum(read_metric(port, "loopline_state_restore_seconds", **labels) for labels in restored)
            records = read_metric(port, "loopline_state_restored_records_total")
        finally:
            second.stop()
        results.append(Restore(backend, local, pending, store_bytes, rss, took, records))
        print(f"  restore of {pending:,} pending events, {backend}, {local}: {took:.2f} s", file=sys.stderr, flush=True)
    bench.drop(case)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events (3 records each) of the throughput rows")
    parser.add_argument("--pending", type=int, default=100_000, help="events held by the join in the restore rows")
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the data topics")
    parser.add_argument("--row-timeout", type=float, default=180.0, help="seconds a row may take to drain")
    args = parser.parse_args()
    broker, bench = local_bench(args, "s")
    work = bench.work
    started = time.monotonic()
    try:
        now = int(time.time() * 1000)
        rates = {backend: throughput(bench, backend, args.events, now) for backend in ("disk", "memory")}
        restored = [r for backend in ("memory", "disk") for r in restores(bench, backend, args.pending, now)]
    except BaseException:
        print(f"failed; the broker's data and the workers' logs are in {work}", file=sys.stderr)
        raise
    finally:
        broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s; load average after the run {os.getloadavg()[0]:.2f})")
    print(
        f"\n### Join throughput by state store (exactly-once, one worker, max batch {JoinSettings().max_batch_size})\n"
    )
    print("| store | events/s | vs memory |")
    print("|---|---:|---:|")
    for backend, rate in rates.items():
        print(f"| {backend} | {rate:,.0f} | {rate / rates['memory']:.2f} |")
    print(f"\n### Restore of a join holding {args.pending:,} pending events ({args.partitions} partitions)\n")
    print("| store | what the new worker finds | changelog records read | restore s (sum over partitions) "
          "| s per 100k entries | store bytes per pending event | worker RSS, MB |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in restored:
        per_100k = r.seconds / r.pending * 100_000
        print(f"| {r.backend} | {r.local} | {r.records:,.0f} | {r.seconds:.2f} | {per_100k:.2f} | "
              f"{r.store_bytes / r.pending:,.0f} | {r.rss_bytes / 2**20:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
