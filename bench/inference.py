"""Inference throughput and latency, side by side with a raw relay, on a real local broker.

    python bench/inference.py                 # broker runs + the inference stage alone
    python bench/inference.py --stage-only --device cuda --backend torch --max-batch 65536

Broker runs (each a real worker process against a broker this script starts):
  * relay: consume features and produce the same bytes (the client stack's ceiling);
  * loopline inference with max batch size 1 (per-event inference, the naive baseline) ... 4096.
Throughput is measured draining a backlog of N events (first to last output record timestamp);
latency (event time to the output record's timestamp) at a fixed offered rate below capacity.

Stage alone: decode → model → encode in this process, no broker, for each batch size.
Prints markdown tables; docs/benchmarks.md keeps a run's results.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from timing import best_rate

from models import ArtifactFormat, ArtifactStore, Status, TrainConfig, make_version, train_mlp
from models.datasets import Concept, feature_names, sample
from streams.codec import Codec
from streams.deadletters import SourceRecord
from streams.inference.core import InferenceCore
from streams.inference.loader import load_model
from streams.kafka.broker import Broker, free_port
from streams.kafka.clients import read_topic, send_all
from streams.kafka.config import confluent_config
from streams.kafka.topics import create_topics
from streams.kafka.versions import publish_versions
from streams.settings import BrokerSettings, InferenceSettings, KafkaSettings

WIDTH = 32
ROOT = Path(__file__).resolve().parents[1]


def bench_model(fmt: ArtifactFormat, store: ArtifactStore):  # type: ignore[no-untyped-def]
    x, y = sample(Concept(seed=0, n_features=WIDTH), rows=4000, seed=0)
    model = train_mlp(x, y, 2, TrainConfig(hidden=(64, 32), epochs=1))
    return make_version(model, model_name="bench", version=1, feature_names=feature_names(WIDTH),
                        classes=["no", "yes"], store=store, artifact_format=fmt, status=Status.SERVING)  # fmt: skip


def feature_messages(count: int, event_time: int | None = None) -> list[tuple[str, bytes]]:
    codec = Codec.load("features")
    values = np.random.default_rng(1).normal(size=(count, WIDTH)).astype(np.float32).tolist()
    out = []
    for i in range(count):
        event_id = str(uuid.uuid4())
        record = {"event_id": event_id, "event_time": event_time or int(time.time() * 1000), "entity_id": f"u{i}",
                  "values": values[i]}  # fmt: skip
        out.append((event_id, codec.encode(record)))
    return out


# -- stage alone -------------------------------------------------------------------------------


def stage_alone(args: argparse.Namespace, store: ArtifactStore) -> None:
    fmt = ArtifactFormat.TORCH if args.backend == "torch" else ArtifactFormat.ONNX
    version = bench_model(fmt, store)
    settings = InferenceSettings(device=args.device, backend=args.backend)
    loaded = load_model(version, settings, store, shadow=False, expected_features=None)
    core = InferenceCore()
    core.stage("serving", loaded)
    sizes = [s for s in (1, 16, 64, 256, 1024, 4096, 16384, 65536) if s <= args.max_batch]
    messages = feature_messages(max(sizes))
    records = [SourceRecord(k.encode(), v, "features", 0, i, 0) for i, (k, v) in enumerate(messages)]
    info = loaded.backend.info
    print(f"\n### Inference stage alone ({info.backend} on {info.device}, {WIDTH} features, MLP 64-32-2)\n")
    print("| batch | decode→model→encode events/s | model alone inferences/s | model share |")
    print("|---:|---:|---:|---:|")
    for size in sizes:
        batch = records[:size]
        matrix = loaded.decoder.decode([r.value for r in batch]).matrix
        full = best_rate(lambda b=batch: core.process(b), size, args.seconds)
        model = best_rate(lambda m=matrix: loaded.backend.predict(m), size, args.seconds)
        print(f"| {size} | {full:,.0f} | {model:,.0f} | {full / model:.0%} |")


# -- broker runs -------------------------------------------------------------------------------


def run_case(kafka: KafkaSettings, name: str, batch: int, events: int, rate: int, seconds: float,
             artifact_dir: Path) -> dict[str, float]:  # fmt: skip
    """One worker process: drain a backlog of ``events``, then ``rate`` events/s for ``seconds``."""
    case = kafka.model_copy(update={"topic_prefix": f"{kafka.topic_prefix}{name}-{batch}."})
    create_topics(case)
    store = ArtifactStore(artifact_dir, 1 << 20)
    publish_versions(case, [bench_model(ArtifactFormat.ONNX, store)])
    output = case.topic("predictions")  # the relay copies the feature records there unchanged
    if name == "relay":
        command = [sys.executable, str(ROOT / "bench" / "relay.py"), output]
    else:
        command = [sys.executable, "-m", "streams.cli", "worker", "inference", "--loglevel", "warning"]
    env = os.environ | {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": case.bootstrap_servers, "LOOPLINE_KAFKA_TOPIC_PREFIX": case.topic_prefix,
        "LOOPLINE_INFERENCE_MODEL_NAME": "bench", "LOOPLINE_INFERENCE_MAX_BATCH_SIZE": str(batch),
        "LOOPLINE_INFERENCE_MAX_WAIT_MS": "5", "LOOPLINE_METRICS_PORT": str(free_port()),
    }  # fmt: skip
    send_all(case, case.topic("features"), feature_messages(events))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        drained = read_topic(case, output, until=lambda m: len(m) >= events, timeout_s=600)
        stamps = sorted(m.timestamp()[1] for m in drained)
        throughput = (len(stamps) - 1) / max((stamps[-1] - stamps[0]) / 1000, 1e-3)
        paced = _paced(case, rate, seconds)
        got = read_topic(case, output, until=lambda m: len(m) >= events + len(paced), timeout_s=120)
        latencies = [m.timestamp()[1] - paced[m.key().decode()] for m in got if m.key().decode() in paced]
    finally:
        proc.terminate()
        proc.wait(60)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"throughput": throughput, "p50": p50, "p95": p95, "p99": p99}


def _paced(kafka: KafkaSettings, rate: int, seconds: float) -> dict[str, int]:
    """Send ``rate`` events/s in 20 ms ticks for ``seconds``; return event_id → event time."""
    producer = Producer(confluent_config(kafka, {"linger.ms": 0, "partitioner": "murmur2_random"}))
    sent: dict[str, int] = {}
    tick, start = 0.02, time.monotonic()
    while time.monotonic() - start < seconds:
        now = int(time.time() * 1000)
        for key, value in feature_messages(max(1, int(rate * tick)), event_time=now):
            producer.produce(kafka.topic("features"), value=value, key=key)
            sent[key] = now
        producer.poll(0)
        time.sleep(max(0.0, tick - (time.monotonic() - start) % tick))
    producer.flush(30)
    return sent


def broker_runs(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    broker = Broker(BrokerSettings(data_dir=data / "kafka", port=0, heap="1g"))
    kafka = KafkaSettings(bootstrap_servers=broker.start(), topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=2)
    try:
        cases = [("relay", 1024)] + [("inference", b) for b in (1, 16, 256, 1024, 4096)]
        results = {}
        for name, batch in cases:
            events = args.events_batch1 if batch == 1 else args.events
            results[(name, batch)] = run_case(kafka, name, batch, events, args.rate, args.paced_seconds,
                                              data / "artifacts")  # fmt: skip
            print(f"  done {name} batch {batch}: {results[(name, batch)]['throughput']:,.0f} events/s", file=sys.stderr)
    finally:
        broker.stop()
    ceiling, naive = results[("relay", 1024)]["throughput"], results[("inference", 1)]["throughput"]
    print(f"\n### Through the broker (2 partitions, one worker process, {args.rate} events/s offered for latency)\n")
    print("| pipeline | max batch | events/s | vs relay | vs batch 1 | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, batch), r in results.items():
        print(f"| {name} | {batch} | {r['throughput']:,.0f} | {r['throughput'] / ceiling:.2f} | "
              f"{r['throughput'] / naive:.1f}x | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage-only", action="store_true", help="skip the broker runs")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch of the stage-alone run")
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per stage measurement")
    parser.add_argument("--events", type=int, default=40000, help="backlog per broker run")
    parser.add_argument("--events-batch1", type=int, default=4000, help="backlog of the batch-1 run")
    parser.add_argument("--rate", type=int, default=1000, help="offered events/s of the latency runs")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        stage_alone(args, ArtifactStore(Path(tmp), 1 << 20))
    if not args.stage_only:
        broker_runs(args)


if __name__ == "__main__":
    main()
