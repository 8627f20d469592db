"""The model registry: version records, the state they add up to, the model-versions topic, and what may serve.

The compacted model-versions topic is the source of truth: every record is the latest status of
one version of one model. :class:`Registry` folds those records into the current state, in topic
order; it does no I/O, so the CLI, the trainer and every inference worker share the same rules:

- the serving version of a model is the one whose latest record says ``serving`` (the most recently
  published, should two say so); what serves is the first of :meth:`Registry.serving_candidates`
  that passes its checks (``loopline.models.registry.admission``), for the workers and the CLI alike;
- promoting a version publishes it as serving and every other version that says serving as retired;
- a canary serves a share of the entities (its ``traffic``) instead of the serving version; one
  canary per model: starting another rejects the one before;
- rolling back publishes an earlier version as serving and the current one as retired;
- a version record is immutable once published: only its status (with its reason, time and id)
  changes. A later record of the same version with another artifact, features, classes or
  metadata is not folded; :meth:`Registry.apply` says why, and every reader reports it;
- a model's feature contract is set by the first version that served it with a dense vector (the
  lowest-numbered such version whose status is serving or retired): every dense version that is to
  serve must take the same features, since producers send values in that order. A version with
  typed inputs (``feature_types``) takes named fields and may declare any.

The parts: ``records`` (:class:`ModelVersion`), ``fold`` (:class:`Registry`, its frozen
:class:`Snapshot`), ``topic`` (:func:`publish`, :func:`load_registry`, :func:`fit_to_topic`),
``follower`` (:class:`RegistryFollower`, one per worker) and ``admission`` (what may serve; imported
as ``loopline.models.registry.admission``, since it loads models with ``loopline.inference.loader``).
"""

from loopline.models.registry.fold import Registry, RegistryView, Snapshot, moved
from loopline.models.registry.follower import RegistryFollower
from loopline.models.registry.records import (
    ArtifactFormat,
    ModelVersion,
    Outputs,
    RegistryError,
    Status,
    empty_lineage,
)
from loopline.models.registry.topic import fit_to_topic, load_registry, publish

__all__ = [
    "ArtifactFormat",
    "ModelVersion",
    "Outputs",
    "Registry",
    "RegistryError",
    "RegistryFollower",
    "RegistryView",
    "Snapshot",
    "Status",
    "empty_lineage",
    "fit_to_topic",
    "load_registry",
    "moved",
    "publish",
]
