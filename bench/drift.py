"""Drift detection: delay and false alarms per detector on the same seeded streams, and the cost per event.

    python bench/drift.py [--seeds 10] [--stationary 100000]

Prints three markdown tables:

1. concept drift: every concept detector in an ErrorMonitor (warm-up 500, only rises count) on
   per-outcome errors that jump from 10% to 30% (abrupt) or climb from 10% to 40% over 4,000
   outcomes (gradual), and on a stationary 10% stream for false alarms;
2. covariate drift: each real-valued detector in a BlockMonitor (8 features, blocks of 32) on
   standard-normal features where one moves by 0.5 standard deviations;
3. the agent cores per record, decoding included: the drift core on outcomes (8 and 32 features;
   5,000 on 4,000 outcomes, its warm-up included) and predictions, and the join core on features,
   predictions and labels, next to a plain decode of the same records.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
from timing import best_rate

from loopline.codec import Codec
from loopline.drift.core import DriftCore
from loopline.drift.detectors import BINARY, DETECTORS
from loopline.drift.monitor import BlockMonitor, ErrorMonitor
from loopline.join.core import JoinCore, JoinTopics
from loopline.models import ArtifactFormat, ModelVersion, Status
from loopline.records import SourceRecord
from loopline.settings import DriftSettings
from loopline.state.state import State
from loopline.state.store import MemoryStore
from loopline.testing import MemoryChangelog

ONSET = 3000
WARMUP = 500
CONCEPT_PARAMS: dict[str, dict[str, float]] = {"ADWIN": {"delta": 0.002}}
BLOCK_PARAMS: dict[str, dict[str, float]] = {"ADWIN": {"delta": 1e-4, "clock": 1}, "KSWIN": {"alpha": 1e-4}}


def first_after(detections: list[int], onset: int) -> int | None:
    late = [d for d in detections if d >= onset]
    return late[0] - onset if late else None


def summary(delays: list[int | None]) -> str:
    found = [d for d in delays if d is not None]
    if not found:
        return f"missed {len(delays)}/{len(delays)}"
    missed = f", missed {len(delays) - len(found)}" if len(found) < len(delays) else ""
    return f"{statistics.median(found):.0f} (max {max(found)}){missed}"


def concept_table(seeds: int, stationary: int) -> None:
    print(
        "| detector | abrupt 10%→30%: delay, median (max) | gradual 10%→40%: delay | false alarms per 100k | µs per update |"
    )
    print("|---|---|---|---|---|")
    for name in DETECTORS:
        params = CONCEPT_PARAMS.get(name, {})
        abrupt, gradual = [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            errors = (rng.random(10_000) < np.where(np.arange(10_000) < ONSET, 0.1, 0.3)).astype(int)
            monitor = ErrorMonitor(name, params, WARMUP, 200)
            abrupt.append(first_after([d.index for d in monitor.update(errors.tolist())], ONSET))
            rate = 0.1 + 0.3 * np.clip((np.arange(12_000) - ONSET) / 4000, 0, 1)
            errors = (rng.random(12_000) < rate).astype(int)
            monitor = ErrorMonitor(name, params, WARMUP, 200)
            gradual.append(first_after([d.index for d in monitor.update(errors.tolist())], ONSET))
        errors = (np.random.default_rng(99).random(stationary) < 0.1).astype(int).tolist()
        monitor = ErrorMonitor(name, params, WARMUP, 200)
        start = time.perf_counter()
        alarms = len(monitor.update(errors))
        cost = (time.perf_counter() - start) / stationary * 1e6
        per_100k = alarms * 100_000 / stationary
        print(f"| {name} {params or ''} | {summary(abrupt)} | {summary(gradual)} | {per_100k:.1f} | {cost:.2f} |")


def covariate_table(seeds: int, stationary: int) -> None:
    columns = [f"x{i}" for i in range(8)]
    print(
        "| detector | 0.5 std shift on x3: delay, median (max) | attributed to x3 | false alarms per 100k | µs per sample |"
    )
    print("|---|---|---|---|---|")
    for name in (n for n in DETECTORS if n not in BINARY):
        params = BLOCK_PARAMS.get(name, {})
        delays, right = [], 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            x = rng.normal(size=(12_000, 8))
            x[ONSET:, 3] += 0.5
            monitor = BlockMonitor(columns, name, params, WARMUP, 32, 200)
            found = [d for d in monitor.update(x) if d.index >= ONSET]
            delays.append(found[0].index - ONSET if found else None)
            right += bool(found) and found[0].column == "x3"
        x = np.random.default_rng(99).normal(size=(stationary, 8))
        monitor = BlockMonitor(columns, name, params, WARMUP, 32, 200)
        start = time.perf_counter()
        alarms = sum(len(monitor.update(x[i : i + 1000])) for i in range(0, stationary, 1000))
        cost = (time.perf_counter() - start) / stationary * 1e6
        per_100k = alarms * 100_000 / stationary
        print(f"| {name} {params or ''} | {summary(delays)} | {right}/{seeds} | {per_100k:.1f} | {cost:.2f} |")


def outcome_records(width: int, count: int) -> list[SourceRecord]:
    codec = Codec.load("outcome")
    rng = np.random.default_rng(0)
    records = []
    for offset, values in enumerate(rng.normal(size=(count, width)).astype(np.float32).tolist()):
        value = codec.encode({
            "event_id": f"e{offset}", "event_time": offset, "entity_id": "u", "values": values, "model_name": "m",
            "model_version": 1, "shadow": False, "scores": [0.3, 0.7], "predicted_class": "yes", "label": "yes",
            "label_time": offset, "prediction_delay_ms": 1, "label_delay_ms": 1, "correct": offset % 10 != 0,
            "log_loss": 0.3, "label_rate": 1.0,
        })  # fmt: skip
        records.append(SourceRecord(b"m", value, "o", 0, offset, offset))
    return records


def prediction_records(count: int, topic: str = "p") -> list[SourceRecord]:
    codec = Codec.load("prediction")
    records = []
    for offset in range(count):
        value = codec.encode({
            "event_id": f"e{offset}", "event_time": offset, "prediction_time": offset, "entity_id": "u",
            "model_name": "m", "model_version": 1, "shadow": False, "scores": [0.3, 0.7],
            "predicted_class": "yes", "queue_wait_ms": 0.0, "inference_ms": 0.0,
        })  # fmt: skip
        records.append(SourceRecord(f"e{offset}".encode(), value, topic, 0, offset, offset))
    return records


def join_records(width: int, count: int) -> list[SourceRecord]:
    features, labels = Codec.load("features"), Codec.load("label")
    rng = np.random.default_rng(0)
    offsets = itertools.count()
    records = []
    for i, values in enumerate(rng.normal(size=(count, width)).astype(np.float32).tolist()):
        event_id = f"e{i}"
        feature = features.encode({"event_id": event_id, "event_time": i, "entity_id": "u", "values": values})
        label = labels.encode({"event_id": event_id, "event_time": i, "label": "yes"})
        records.append(SourceRecord(event_id.encode(), feature, "f", 0, next(offsets), i))
        records.append(SourceRecord(event_id.encode(), label, "l", 0, next(offsets), i))
    predictions = prediction_records(count)
    return [r for pair in zip(records[::2], predictions, records[1::2], strict=True) for r in pair]


def decode_all(records: list[SourceRecord], decode: Callable[[SourceRecord], object]) -> None:
    """Decode every record, a thousand at a time, keeping nothing: what a core does before its own work."""
    for start in range(0, len(records), 1000):
        [decode(record) for record in records[start : start + 1000]]


def cost_table(seconds: float) -> None:
    version = ModelVersion(
        "m", 1, Status.SERVING, ArtifactFormat.ONNX, "00", [f"x{i}" for i in range(32)], ["no", "yes"]
    )
    print("| core | input | µs per record | records/s | decode alone, µs per record |")
    print("|---|---|---|---|---|")
    rows = []
    for width, count in ((8, 20_000), (32, 20_000), (5000, 4000)):
        narrow = ModelVersion(
            "m", 1, Status.SERVING, ArtifactFormat.ONNX, "00", [f"x{i}" for i in range(width)], version.classes
        )
        records = outcome_records(width, count)
        rows.append((f"drift ({width} features)", "outcomes", records, narrow, "outcome"))
    rows.append(("drift", "predictions", prediction_records(20_000), version, "prediction"))
    for name, kind, records, described, schema in rows:
        codec = Codec.load(schema)

        def drift(records=records, described=described) -> None:
            core = DriftCore(DriftSettings(), "o", lambda m, v, d=described: d)
            for start in range(0, len(records), 1000):
                core.process(records[start : start + 1000])
                core.changes()  # the state each batch hands to its store

        rate = best_rate(drift, len(records), seconds)
        decode = best_rate(
            lambda records=records, codec=codec: decode_all(records, lambda r, c=codec: c.decode(r.value)),
            len(records),
            seconds,
        )
        print(f"| {name} | {kind} | {1e6 / rate:.2f} | {rate:,.0f} | {1e6 / decode:.2f} |")
    codecs = {"f": Codec.load("features"), "p": Codec.load("prediction"), "l": Codec.load("label")}
    for width in (8, 32):
        records = join_records(width, 10_000)

        def join(records=records) -> None:
            state = State("join", lambda partition: MemoryStore(), MemoryChangelog())
            state.assign([0])
            core = JoinCore(JoinTopics("f", "p", "sp", "l"), lambda m, v: ["no", "yes"], state, 3_600_000, 10**6, 1000)
            core.assigned({("f", 0): (0, "")})
            for start in range(0, len(records), 2000):
                core.process(records[start : start + 2000])
                state.changes()  # what the batch loop sends to the changelog, then writes to the store
                state.committed()

        rate = best_rate(join, len(records), seconds)
        decode = best_rate(
            lambda records=records: decode_all(records, lambda r: codecs[r.topic].decode(r.value)),
            len(records),
            seconds,
        )
        print(
            f"| join ({width} features) | features + predictions + labels | {1e6 / rate:.2f} | {rate:,.0f} | {1e6 / decode:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeded streams per detector")
    parser.add_argument("--stationary", type=int, default=100_000, help="samples of the stationary streams")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per cost measurement")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.seeds} seeds per cell\n")
    concept_table(args.seeds, args.stationary)
    print()
    covariate_table(args.seeds, args.stationary)
    print()
    cost_table(args.seconds)


if __name__ == "__main__":
    main()
