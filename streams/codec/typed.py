"""Typed inputs: a model version that declares named, typed features takes feature events' ``fields``.

A version's ``feature_types`` gives each of its ``feature_names`` a type: ``float``, ``int`` or
``category``, with a trailing ``?`` when the value may be missing (null or absent). Every agent
that needs the model's input (the inference decoder, the join writing outcomes, the trainer reading
them) turns an event's fields into the same float32 row with :class:`Vectoriser`:

- a number is itself (an ``int`` must be a whole number, sent as a long); a missing optional
  value is NaN, for the artifact's own imputation;
- a category string is its code: the first 3 bytes of its SHA-256, a whole number below 2^24
  (exact in float32), so that a category never seen before has a code too and a retrain learns
  it. The artifact's graph does the rest (imputation, scaling, one-hot of the codes): what was
  learned travels inside the artifact, and nothing is computed outside it that training did not see.

A field the model does not name is ignored. A required value that is missing is ``missing-field``;
a value of the wrong type (a string for a number, a fraction for an int, a number for a category)
is ``wrong-type``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline.codec.errors import CodecError

__all__ = ["TYPES", "Input", "Vectoriser", "category_code", "numeric_columns", "parse_inputs"]

TYPES = ("float", "int", "category")


@dataclass(frozen=True)
class Input:
    """One typed feature."""

    name: str
    type: str
    optional: bool

    @property
    def declared(self) -> str:
        """The type as ``feature_types`` writes it (``category?``)."""
        return self.type + ("?" if self.optional else "")


def parse_inputs(names: Sequence[str], types: Sequence[str]) -> list[Input]:
    """The typed inputs of ``feature_names`` and ``feature_types``.

    Raises:
        ValueError: a type is unknown, or there is not one per name.
    """
    if len(types) != len(names):
        raise ValueError(f"{len(types)} feature types for {len(names)} features")
    inputs = []
    for name, declared in zip(names, types, strict=True):
        kind = declared.removesuffix("?")
        if kind not in TYPES:
            raise ValueError(f"feature {name!r} has type {declared!r}, not one of {', '.join(TYPES)} (? when optional)")
        inputs.append(Input(name, kind, declared.endswith("?")))
    return inputs


def numeric_columns(types: Sequence[str], width: int) -> list[int]:
    """The columns of a model's rows that hold numbers: every one of a dense vector (no ``types``), the
    non-category ones of typed inputs (a category's code is a hash: its mean says nothing)."""
    return [column for column in range(width) if not types or types[column].removesuffix("?") != "category"]


def category_code(value: str) -> float:
    """The code a category string is served and trained as: its SHA-256's first 3 bytes, below 2^24."""
    return float(int.from_bytes(hashlib.sha256(value.encode()).digest()[:3], "big"))


class Vectoriser:
    """Turns events' named fields into the float rows a typed model version takes (build one with
    :meth:`of` from the version's feature names and types)."""

    def __init__(self, inputs: Sequence[Input]) -> None:
        self.inputs = list(inputs)

    @classmethod
    def of(cls, names: Sequence[str], types: Sequence[str]) -> Vectoriser:
        """The vectoriser of a version's ``feature_names`` and ``feature_types`` (``float``, ``int`` or
        ``category``, each with a trailing ``?`` when the value may be missing).

        Example:
            >>> vectoriser = Vectoriser.of(["amount", "country"], ["float", "category?"])
            >>> vectoriser.row({"amount": 12.5, "country": "NL"})
            [12.5, 4404479.0]

        Raises:
            ValueError: a type is unknown, or there is not one per name.
        """
        return cls(parse_inputs(names, types))

    def matrix(self, events: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The float32 rows of many events' ``fields``, shape (events, features): what a typed
        version is trained on.

        Raises:
            CodecError: ``missing-field`` or ``wrong-type``, naming the field.
        """
        rows = [self.row(fields) for fields in events]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(self.inputs))

    def row(self, fields: Mapping[str, Any]) -> list[float]:
        """The row of one event's ``fields``.

        Raises:
            CodecError: ``missing-field`` or ``wrong-type``, naming the field.
        """
        return [self._value(spec, fields.get(spec.name)) for spec in self.inputs]

    @staticmethod
    def _value(spec: Input, value: Any) -> float:
        if value is None:
            if spec.optional:
                return math.nan
            raise CodecError("missing-field", f"field {spec.name!r} ({spec.declared}) is missing")
        if spec.type == "category":
            if isinstance(value, str):
                return category_code(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 2**24 and spec.type == "int":
                raise CodecError("wrong-type", f"field {spec.name!r} ({spec.declared}) is {value}, beyond the "
                                 "2^24 that a float32 holds exactly")  # fmt: skip
            return float(value)
        elif isinstance(value, float) and spec.type == "float" and math.isfinite(value):
            return value
        raise CodecError("wrong-type", f"field {spec.name!r} ({spec.declared}) can't be {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
