"""The inference stage alone: decode → model → encode in this process, no broker, per batch size.

    python bench/inference.py
    python bench/inference.py --device cuda --backend torch --max-batch 65536

Prints a markdown table of events/s through ``InferenceCore.process`` (framed feature records in,
framed predictions out) next to the model call alone, for batch sizes 1..max-batch; best of three
runs of at least ``--seconds`` per cell. The same stage through a real broker, side by side with
plain relays, is bench/broker.py. docs/benchmarks.md keeps a run's results.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from timing import best_rate

from loopline.codec import Codec
from loopline.inference.core import InferenceCore
from loopline.inference.loader import load_model
from loopline.models import ArtifactFormat, ArtifactStore, Status, TrainConfig, make_version, train_mlp
from loopline.models.datasets import Concept, feature_names, sample
from loopline.records import SourceRecord
from loopline.settings import InferenceSettings

WIDTH = 32


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage-only", action="store_true", help=argparse.SUPPRESS)  # the old flag: a no-op now
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch of the stage-alone run")
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per stage measurement")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        stage_alone(args, ArtifactStore(Path(tmp), 1 << 20))


if __name__ == "__main__":
    main()
