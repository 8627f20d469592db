"""Bulk encoding of one batch of predictions, byte-identical to the ``Prediction`` codec's output.

The fields that are the same for the whole batch (model, version, shadow flag, prediction time,
batch inference time) are encoded once; one compiled pass
(:func:`loopline.codec.compiled.encode_predictions`) writes every row's ids (copied from the
feature batch's bytes), event time, scores, class and queue wait.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

import numpy as np

from loopline.codec.compiled import encode_predictions
from loopline.codec.features import FeatureBatch
from loopline.codec.framing import Codec
from loopline.codec.varint import write_long

__all__ = ["PredictionEncoder"]

_FLOAT = struct.Struct("<f")


def _string(value: str) -> bytes:
    raw = value.encode()
    return write_long(len(raw)) + raw


def _bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


class PredictionEncoder:
    """Encode the predictions of one model version.

    Args:
        codec: the prediction codec (its header frames every record).
        model_name: name of the model.
        model_version: version that made the scores.
        classes: class names, in score order.
        shadow: whether these are shadow predictions.
    """

    def __init__(self, codec: Codec, model_name: str, model_version: int, classes: Sequence[str], shadow: bool) -> None:
        self.classes = list(classes)
        if not self.classes:
            raise ValueError("a model needs at least one class")
        self._header = _bytes(codec.header)
        model = _string(model_name) + write_long(model_version) + (b"\x01" if shadow else b"\x00")
        self._model = _bytes(model + write_long(len(self.classes)))
        tails = [b"\x00" + _string(name) for name in self.classes]  # the scores' end marker, the class
        self._tails = _bytes(b"".join(tails))
        self._tail_bounds = np.cumsum([0] + [len(tail) for tail in tails], dtype=np.int64)

    def encode(
        self,
        batch: FeatureBatch,
        rows: np.ndarray,
        scores: np.ndarray,
        prediction_time: int,
        queue_wait_ms: np.ndarray,
        inference_ms: float,
    ) -> list[bytes]:
        """One framed ``Prediction`` for each of the ``batch`` rows ``rows``, with its row of ``scores``
        (shape (rows, classes)) and of ``queue_wait_ms``.

        The predicted class is the arg-max of each score row.
        """
        count, width = scores.shape
        if width != len(self.classes):
            raise ValueError(f"scores have {width} columns, the model has {len(self.classes)} classes")
        if len(rows) != count or len(queue_wait_ms) != count:
            raise ValueError(f"{len(rows)} rows, {count} score rows and {len(queue_wait_ms)} waits")
        scores = np.ascontiguousarray(scores, dtype="<f4")
        waits = np.ascontiguousarray(queue_wait_ms, dtype="<f4")
        winners = np.argmax(scores, axis=1) if count else np.zeros(0, dtype=np.int64)
        out, bounds = encode_predictions(
            _bytes(batch.text), batch.spans[rows], batch.event_times[rows], prediction_time,
            scores.view(np.uint8).reshape(count, 4 * width), winners, waits.view(np.uint8).reshape(count, 4),
            self._header, self._model, self._tails, self._tail_bounds, _bytes(_FLOAT.pack(inference_ms)),
        )  # fmt: skip
        data = out.tobytes()
        edges = bounds.tolist()
        return [data[start:stop] for start, stop in itertools.pairwise(edges)]
