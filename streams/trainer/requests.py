"""The trainer's request rules (no Kafka): which requests a training answers, and what data it reads.

A request asks for a model trained on data that includes what happened up to the moment it was
written. A training answers it only if it read its window after the request was written: a request
that comes while a training runs (on a window read before it) gets a training of its own, whatever
that training's verdict was. "Before" is told by offsets, not clocks: a training notes the end of
each retrain-requests partition when it reads its window, and a request below that end was
written before (the writer's clock, wrong or not, plays no part). A rejected candidate ends nothing either: the drift agent keeps asking
(:mod:`loopline.drift.recovery`) while the model's error stays above its level before the drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loopline.models import Registry

__all__ = ["answered", "answered_by", "data_start"]


def answered(partition: int, offset: int, read_upto: Mapping[int, int] | None) -> bool:
    """Whether a training that read its window when the retrain-requests partitions ended at
    ``read_upto`` (partition → end offset; None: no training yet) answered the request at
    ``offset`` of ``partition``."""
    return read_upto is not None and offset < read_upto.get(partition, 0)


def answered_by(registry: Registry, model_name: str) -> dict[int, int] | None:
    """The retrain-requests ends read by the last training of ``model_name`` that published a version
    (its lineage's ``requests``; None when no trained version has them).

    A trainer that restarts takes them as its last training's: the requests below them, read again
    because the trainer stopped after publishing their version and before committing their offsets,
    are answered by that version rather than trained again.
    """
    trained = [v for v in registry.versions(model_name) if v.lineage.get("requests")]
    if not trained:
        return None
    return {r["partition"]: r["end"] for r in trained[-1].lineage["requests"]}


def data_start(requests: Iterable[Mapping[str, Any]], outcomes_topic: str) -> dict[int, int]:
    """The first outcome offset a training for ``requests`` reads, per partition of ``outcomes_topic``.

    A request's ``since`` says it; without one, a drift request's data starts after its evidence's
    offsets (the data of the world after the detection). Of several requests the latest start wins:
    the newest world. Empty when no request says (the most recent window).
    """
    start: dict[int, int] = {}

    def later(partition: int, offset: int) -> None:
        start[partition] = max(start.get(partition, 0), offset)

    for request in requests:
        if request.get("since"):
            for position in request["since"]:
                if position["topic"] == outcomes_topic:
                    later(position["partition"], position["offset"])
            continue
        for span in (request["evidence"] or {}).get("offsets", []):
            if span["topic"] == outcomes_topic:
                later(span["partition"], span["end"] + 1)
    return start
