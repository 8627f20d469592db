"""Bulk encoding of one batch of predictions, byte-identical to the ``Prediction`` codec's output.

The fields that are the same for the whole batch (model, version, shadow flag, prediction time,
batch inference time) are encoded once; per row only the ids, the event time, the score row and
the class are written.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from streams.codec.framing import Codec
from streams.codec.varint import write_long

__all__ = ["PredictionEncoder"]

_FLOAT = struct.Struct("<f")


def _string(value: str) -> bytes:
    raw = value.encode()
    return write_long(len(raw)) + raw


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
        self.header = codec.header
        self.classes = list(classes)
        if not self.classes:
            raise ValueError("a model needs at least one class")
        self._model = (
            _string(model_name)
            + write_long(model_version)
            + (b"\x01" if shadow else b"\x00")
            + write_long(len(self.classes))
        )
        self._class_tails = [b"\x00" + _string(name) for name in self.classes]

    def encode(
        self,
        event_ids: Sequence[str],
        event_times: np.ndarray,
        entity_ids: Sequence[str],
        scores: np.ndarray,
        prediction_time: int,
        queue_wait_ms: np.ndarray,
        inference_ms: float,
    ) -> list[bytes]:
        """One framed ``Prediction`` per row of ``scores`` (shape (rows, classes)).

        The predicted class is the arg-max of each score row.
        """
        rows, width = scores.shape
        if width != len(self.classes):
            raise ValueError(f"scores have {width} columns, the model has {len(self.classes)} classes")
        score_bytes = np.ascontiguousarray(scores, dtype="<f4").tobytes()
        wait_bytes = np.ascontiguousarray(queue_wait_ms, dtype="<f4").tobytes()
        winners = np.argmax(scores, axis=1).tolist() if rows else []
        times = event_times.tolist()
        predicted_at = write_long(prediction_time)
        model = self._model
        tails = self._class_tails
        infer = _FLOAT.pack(inference_ms)
        step = 4 * width
        out = []
        for i in range(rows):
            out.append(
                b"".join(
                    (
                        self.header,
                        _string(event_ids[i]),
                        write_long(times[i]),
                        predicted_at,
                        _string(entity_ids[i]),
                        model,
                        score_bytes[i * step : (i + 1) * step],
                        tails[winners[i]],
                        wait_bytes[4 * i : 4 * i + 4],
                        infer,
                    )
                )
            )
        return out
