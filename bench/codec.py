"""Codec throughput: loopline's batch codecs vs plain fastavro per-record calls, side by side.

    python bench/codec.py [--width 32] [--seconds 0.3]

Prints a markdown table of records/s for the feature decoder and the prediction encoder at batch
sizes 1..4096, each next to fastavro's per-record schemaless reader/writer on the same records.
"""

from __future__ import annotations

import argparse
import io
import platform
import uuid

import fastavro
import numpy as np
from timing import best_rate

from loopline.codec import Codec, FeatureDecoder, PredictionEncoder

BATCH_SIZES = [1, 4, 16, 64, 256, 1024, 4096]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32, help="floats per feature vector")
    parser.add_argument("--seconds", type=float, default=0.3, help="minimum time per measurement")
    args = parser.parse_args()

    features, predictions = Codec.load("features"), Codec.load("prediction")
    rng = np.random.default_rng(0)
    n = max(BATCH_SIZES)
    records = [
        {"event_id": str(uuid.uuid4()), "event_time": 1_795_000_000_000 + i, "entity_id": f"user-{i % 1000}",
         "values": rng.normal(size=args.width).astype(np.float32).tolist()}
        for i in range(n)
    ]  # fmt: skip
    messages = [features.encode(r) for r in records]
    decoder = FeatureDecoder(features, args.width)
    encoder = PredictionEncoder(predictions, "bench", 1, ["no", "yes"], shadow=False)
    full = decoder.decode(messages)
    scores = rng.random((n, 2)).astype(np.float32)
    waits = rng.random(n).astype(np.float32)

    def fastavro_decode(batch: list[bytes]) -> list[object]:
        return [fastavro.schemaless_reader(io.BytesIO(m[10:]), features.schema, None) for m in batch]

    def fastavro_encode(rows: int) -> list[bytes]:
        out = []
        for i in range(rows):
            buf = io.BytesIO()
            buf.write(predictions.header)
            fastavro.schemaless_writer(buf, predictions.schema, {
                "event_id": full.event_ids[i], "event_time": int(full.event_times[i]),
                "prediction_time": 1_795_000_000_500, "entity_id": full.entity_ids[i], "model_name": "bench",
                "model_version": 1, "shadow": False, "scores": scores[i].tolist(),
                "predicted_class": "yes", "queue_wait_ms": float(waits[i]), "inference_ms": 0.5,
            })  # fmt: skip
            out.append(buf.getvalue())
        return out

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"fastavro {fastavro.__version__}, {args.width} floats per vector, one core\n")  # fmt: skip
    print("| batch | features decode (loopline) | fastavro per record | ratio "
          "| predictions encode (loopline) | fastavro per record | ratio |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in BATCH_SIZES:
        batch = messages[:size]
        ours_dec = best_rate(lambda b=batch: decoder.decode(b), size, args.seconds)
        raw_dec = best_rate(lambda b=batch: fastavro_decode(b), size, args.seconds)
        ours_enc = best_rate(
            lambda s=size: encoder.encode(full, np.arange(s), scores[:s], 1_795_000_000_500, waits[:s], 0.5),
            size, args.seconds,
        )  # fmt: skip
        raw_enc = best_rate(lambda s=size: fastavro_encode(s), size, args.seconds)
        print(f"| {size} | {ours_dec:,.0f} | {raw_dec:,.0f} | {ours_dec / raw_dec:.1f}x "
              f"| {ours_enc:,.0f} | {raw_enc:,.0f} | {ours_enc / raw_enc:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
