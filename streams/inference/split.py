"""The canary split: which events a canary version serves instead of the serving one (no Kafka).

An event goes to the canary when its entity's bucket is below the canary's traffic. The bucket is
a number in [0, 1) fixed by the model name and the entity id alone, so every worker puts an entity
in the same arm, an entity sees one version for as long as the split stands, and a ramp from 5% to
25% keeps the first 5% in the canary. An event without an entity (an empty ``entity_id``) is
placed by its event id.

The bucket is the first 8 bytes of SHA-256 over ``<model name>/<entity id>``, read as a big-endian
unsigned integer and divided by 2**64; in ClickHouse:
``reinterpretAsUInt64(reverse(substring(SHA256(concat(model_name, '/', entity_id)), 1, 8))) / pow(2, 64)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["bucket", "canary_rows"]

_SCALE = float(2**64)


def bucket(model_name: str, entity_id: str) -> float:
    """Where ``entity_id`` of ``model_name`` lies in [0, 1); the canary serves it below its traffic."""
    digest = hashlib.sha256(f"{model_name}/{entity_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def canary_rows(model_name: str, entity_ids: Sequence[str], event_ids: Sequence[str], traffic: float) -> np.ndarray:
    """A mask of the rows the canary serves at ``traffic``: those whose entity (else event id) lies below it."""
    keys = (entity or event for entity, event in zip(entity_ids, event_ids, strict=True))
    return np.fromiter((bucket(model_name, key) < traffic for key in keys), dtype=bool, count=len(entity_ids))
