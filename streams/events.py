"""The events a producer sends and a consumer reads, from Python: framed exactly as the agents read them.

A feature event carries either a dense vector (``values``, in the model's feature order) or named
fields (``fields``, for a version with typed inputs: numbers, category strings, None for a missing
optional value); a label names the class a feature event turned out to be. Send each to its topic
(``features``, ``labels``) keyed by its event_id, partitioned with murmur2 as the agents' producers
are (librdkafka: ``partitioner=murmur2_random``), so that the parts of an event meet in one
partition. A prediction read from the predictions topic decodes into a :class:`Prediction`.

Example:
    >>> from loopline.events import encode_features, encode_label
    >>> features = encode_features("e-1", "user-7", values=[0.5, -1.25], event_time=1_795_000_000_000)
    >>> label = encode_label("e-1", "fraud", event_time=1_795_000_060_000)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache

from loopline.codec.checks import check_id, check_time
from loopline.codec.framing import Codec

__all__ = ["Prediction", "decode_prediction", "encode_features", "encode_label"]

Field = float | int | str | None
"""A named field's value: a number, a category string, or None when an optional value is missing."""


@cache
def _codec(schema: str) -> Codec:
    return Codec.load(schema)


def _checked(event_id: str, moment: int | datetime | None) -> int:
    """The event time in epoch milliseconds (now when ``moment`` is None), with the event_id and the
    time checked as the agents check them when they read the record.

    Raises:
        ValueError: a datetime without a time zone; ``CodecError`` (``invalid-id``, ``invalid-time``).
    """
    if moment is None:
        millis = time.time_ns() // 1_000_000
    elif isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"event time {moment} has no time zone: give an aware datetime or epoch milliseconds")
        millis = int(moment.timestamp() * 1000)
    else:
        millis = int(moment)
    check_id(event_id)
    check_time("event_time", millis)
    return millis


def encode_features(
    event_id: str,
    entity_id: str,
    *,
    values: Sequence[float] | None = None,
    fields: Mapping[str, Field] | None = None,
    event_time: int | datetime | None = None,
) -> bytes:
    """A framed ``Features`` record: the value to send to the features topic, keyed by ``event_id``.

    Args:
        event_id: the event's unique id (at most 1 KiB of UTF-8); predictions, labels and outcomes carry it.
        entity_id: what the event is about (a user, a card, a machine); a canary's share is drawn by it.
        values: the feature vector, in the serving version's ``feature_names`` order (a dense version).
        fields: the named values of a version with typed inputs (``feature_types``).
        event_time: when the event happened, in epoch milliseconds or as an aware datetime; now by default.

    Raises:
        ValueError: neither or both of ``values`` and ``fields`` are given, or an event time without a
            time zone. Its subclass :class:`~loopline.codec.errors.CodecError`, with the reason an
            agent would dead-letter the record for: an empty or overlong event_id (``invalid-id``), a
            time outside the years 1900-2299 (``invalid-time``), a value the schema does not take
            (``invalid-record``: a field that is neither a number, a string nor None).
    """
    if (values is None) == (fields is None):
        raise ValueError("give either values (a dense version) or fields (a version with typed inputs)")
    millis = _checked(event_id, event_time)
    record = {
        "event_id": event_id,
        "event_time": millis,
        "entity_id": entity_id,
        "values": [] if values is None else [float(value) for value in values],
        "fields": {} if fields is None else dict(fields),
    }
    return _codec("features").encode(record)


def encode_label(event_id: str, label: str, *, event_time: int | datetime | None = None) -> bytes:
    """A framed ``Label`` record: the value to send to the labels topic, keyed by ``event_id``.

    Args:
        event_id: the event_id of the feature event it labels.
        label: the true class, one of the model version's ``classes`` (any other is dead-lettered
            as ``unknown-label``).
        event_time: when the label became known, in epoch milliseconds or as an aware datetime; now by default.

    Raises:
        ValueError: an event time without a time zone; ``CodecError`` (a ValueError) for an empty or
            overlong event_id or a time outside the years 1900-2299.
    """
    millis = _checked(event_id, event_time)
    return _codec("label").encode({"event_id": event_id, "event_time": millis, "label": label})


@dataclass(frozen=True)
class Prediction:
    """A model's answer for one feature event, as read from the predictions topic.

    Times are epoch milliseconds.
    """

    event_id: str
    """The feature event's event_id."""
    event_time: int
    """The feature event's time."""
    prediction_time: int
    """When the batch holding it was scored."""
    entity_id: str
    """The feature event's entity_id."""
    model_name: str
    """The model that answered."""
    model_version: int
    """The version of the model that answered."""
    shadow: bool
    """Whether a shadow version made it (never served to consumers: read from shadow-predictions)."""
    scores: tuple[float, ...]
    """Class probabilities, in the version's class order."""
    predicted_class: str
    """The class with the highest score."""
    queue_wait_ms: float
    """How long the event waited in its micro-batch."""
    inference_ms: float
    """Model time of the whole batch."""


def decode_prediction(value: bytes) -> Prediction:
    """The prediction a record of the predictions (or shadow-predictions) topic holds.

    Raises:
        CodecError: the bytes are not a prediction record (a ValueError, with its ``reason``).
    """
    record = _codec("prediction").decode(value)
    record["scores"] = tuple(record["scores"])
    return Prediction(**{field.name: record[field.name] for field in fields(Prediction)})
