"""``loopline models ...``: list, show, register, bootstrap, promote and roll back model versions.

The registry is read as every worker folds it (:func:`loopline.models.registry.load_registry`), and
what serves is what the workers serve (:mod:`loopline.models.registry.admission`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from loopline.inference.loader import LoadedModel, ModelRejected
from loopline.kafka.broker import local_kafka_settings
from loopline.models import (
    ArtifactFormat,
    ArtifactStore,
    ModelVersion,
    Registry,
    Status,
    TrainConfig,
    TreesConfig,
    bootstrap_version,
)
from loopline.models.artifacts import read_bounded
from loopline.models.datasets import Concept, feature_names, sample
from loopline.models.families import FAMILIES, OPAQUE
from loopline.models.registry import empty_lineage, fit_to_topic, load_registry, publish
from loopline.models.registry.admission import admit, on_the_workers, rollback_records, serving_or_fallback
from loopline.settings import InferenceSettings, KafkaSettings, RegistrySettings
from loopline.trainer.regression import check_version

__all__ = ["add_models_parser"]


def _store() -> ArtifactStore:
    settings = RegistrySettings()
    return ArtifactStore(settings.artifact_dir, settings.inline_limit_bytes, settings.max_artifact_bytes)


def _checks() -> InferenceSettings:
    """The inference worker's settings for the checks here, on the CPU (a GPU is the workers')."""
    return InferenceSettings(device="cpu")


def _describe(version: ModelVersion) -> dict[str, object]:
    record = version.to_record()
    record["artifact"] = None if version.artifact is None else f"<{len(version.artifact)} bytes inline>"
    for key in ("event_time", "created_time"):
        record[key] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(record[key]) / 1000))
    return record


def _publish(kafka: KafkaSettings, records: list[ModelVersion]) -> None:
    publish(kafka, records)
    for record in records:
        print(f"{record.model_name} v{record.version}: {record.status} ({record.reason})")


def _publish_new(kafka: KafkaSettings, registry: Registry, store: ArtifactStore, version: ModelVersion,
                 serve: bool) -> None:  # fmt: skip
    """Check a version made here (the checks of a serving version, whatever its status) and publish it,
    promoted when ``serve``; a refused version leaves nothing behind, neither a record nor a file.

    Raises:
        ModelRejected: the version fails a check.
        RegistryError: its records can't be published.
    """
    try:
        version = fit_to_topic(version, store, kafka.max_message_bytes)
        loaded = admit(registry, version, _checks(), store, shadow=version.status == Status.SHADOW)
        if serve:
            version, figures = _regression(registry, version, loaded)
            version = replace(version, reason="; ".join(filter(None, [version.reason, figures])))
        records = [version]
        if serve:
            registry.apply(version)
            records += registry.promote(version.model_name, version.version, version.reason)
        _publish(kafka, records)
    except BaseException:
        store.discard(version)
        raise


def cmd_list(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    names = [args.model] if args.model else registry.models()
    checks, store = _checks(), _store()
    print(f"{'model':<16} {'version':>7}  {'status':<10} {'format':<6} {'sha256':<12}  created              reason")
    for name in names:
        shown = on_the_workers(registry, name, checks, store)
        for v in registry.versions(name):
            status, reason = shown.get(v.version, (v.status.value, v.reason))
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_time / 1000))
            print(f"{name:<16} {v.version:>7}  {status:<10} {v.artifact_format:<6} {v.sha256[:12]:<12}  "
                  f"{created}  {reason}")  # fmt: skip


def cmd_show(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    version = registry.get(args.model, args.version)
    described = _describe(version)
    shown = on_the_workers(registry, args.model, _checks(), _store())
    status, why = shown.get(version.version, (version.status.value, ""))
    described["on_the_workers"] = status + (f" ({why})" if why else "")
    print(json.dumps(described, indent=2, default=str))


def cmd_register(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    artifact_format = ArtifactFormat.TORCH if args.file.suffix in (".pt", ".pth") else ArtifactFormat.ONNX
    lineage = empty_lineage()
    # A state dict is an MLP the trainer can train again; an ONNX file comes without its training code.
    family = {} if artifact_format == ArtifactFormat.TORCH else {"family": OPAQUE}
    lineage["hyperparameters"] = {"outputs": args.outputs, **family} | ({"hidden": args.hidden} if args.hidden else {})
    draft = ModelVersion(
        model_name=args.model,
        version=registry.next_version(args.model),
        status=Status.SHADOW if args.status == "shadow" else Status.CANDIDATE,
        artifact_format=artifact_format,
        sha256="",
        feature_names=args.features.split(","),
        feature_types=args.types.split(",") if args.types else [],
        classes=args.classes.split(","),
        lineage=lineage,
        reason=f"registered from {args.file.name}",
    )
    store = _store()
    data = read_bounded(args.file.resolve(), store.max_bytes)
    _publish_new(kafka, registry, store, store.attach(draft, data), serve=args.status == "serving")


def dataset_classes(y: np.ndarray, classes: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """Class names and ``y`` as indices into them, for a dataset's labels ``y``.

    With ``classes`` given, ``y`` holds indices into them. Without, the names are ``y``'s own
    distinct values as a label record would carry them (``True``, ``yes``, ``3``; whole floats as
    integers), so that the labels sent later are the version's classes and not unknown-label.
    """
    if classes is not None:
        return [str(c) for c in classes], y.astype(np.int64)
    values, index = np.unique(y, return_inverse=True)
    whole = values.dtype.kind == "f" and bool(np.all(values == np.round(values)))
    return [str(int(v)) if whole else str(v.item()) for v in values], index.astype(np.int64).reshape(-1)


def cmd_bootstrap(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    if args.dataset:
        data = np.load(args.dataset)
        x = data["x"].astype(np.float32)
        names = [str(n) for n in data["feature_names"]] if "feature_names" in data else feature_names(x.shape[1])
        classes, y = dataset_classes(data["y"], data.get("classes"))
    else:
        concept = Concept(seed=args.seed, n_features=args.features, n_classes=args.classes)
        x, y = sample(concept, args.rows, seed=args.seed)
        names, classes = feature_names(args.features), [f"class{c}" for c in range(args.classes)]
    store = _store()
    version = bootstrap_version(
        x, y, model_name=args.model, feature_names=names, classes=classes, store=store,
        config=TrainConfig(seed=args.seed, epochs=args.epochs) if args.family == "mlp" else TreesConfig(seed=args.seed),
        version=registry.next_version(args.model),
    )  # fmt: skip
    print(f"trained {args.model} v{version.version}: holdout accuracy {version.metrics['holdout_accuracy']:.3f}")
    _publish_new(kafka, registry, store, version, serve=args.serve)


def cmd_promote(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    version = registry.get(args.model, args.version)
    loaded = admit(registry, version, _checks(), _store(), shadow=args.shadow)
    if args.shadow:
        _publish(kafka, [version.with_status(Status.SHADOW, args.reason)])
        return
    _, figures = _regression(registry, version, loaded)
    reason = "; ".join(filter(None, [args.reason, figures]))
    if args.canary is not None:
        _publish(kafka, registry.start_canary(args.model, args.version, args.canary, reason))
        return
    _publish(kafka, registry.promote(args.model, args.version, reason))


def _regression(registry: Registry, version: ModelVersion, loaded: LoadedModel) -> tuple[ModelVersion, str]:
    """``version`` checked on its model's regression set against what serves: with the set in its lineage,
    and the figures ("" without a set).

    Raises:
        ModelRejected: the version fails the set (reason ``regression``).
    """
    serving = serving_or_fallback(registry, version.model_name, _checks(), _store(), lambda *_: None)
    version, verdict = check_version(RegistrySettings(), version, loaded, serving)
    if not verdict.passed:
        raise ModelRejected("regression", f"version {version.version} can't serve: {verdict.figures}")
    return version, verdict.figures


def _share(text: str) -> float:
    share = float(text)
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"a canary's share is between 0 and 1 (exclusive), not {text}")
    return share


def cmd_rollback(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    records, skipped = rollback_records(registry, args.model, args.reason, _checks(), _store(), to=args.to)
    for line in skipped:
        print(line)
    _publish(kafka, records)


def cmd_reproduce(args: argparse.Namespace, kafka: KafkaSettings, registry: Registry) -> None:
    from loopline.trainer.reproduce import reproduce

    version = registry.get(args.model, args.version)
    result = reproduce(kafka, version, _store())
    print(f"{version.model_name} v{version.version}: retrained from {result.rows} outcomes in {result.ranges} "
          f"on the CPU with seed {result.seed}")  # fmt: skip
    if result.identical:
        print("weights: bit-identical (the artifacts' sha256 match)")
    else:
        print(f"weights differ: largest absolute difference {result.max_difference:.3g} "
              f"(version trained on {version.lineage.get('device', '?')})")  # fmt: skip
    if not result.identical:
        raise SystemExit(1)


def run_models(args: argparse.Namespace) -> int:
    """Dispatch one ``loopline models`` command against the model-versions topic."""
    kafka = local_kafka_settings()
    args.action(args, kafka, load_registry(kafka))
    return 0


def add_models_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``loopline models`` and its commands to the CLI."""
    default_model = InferenceSettings().model_name
    parser = sub.add_parser(
        "models", help="model versions: list, show, register, bootstrap, promote, rollback, reproduce"
    )
    parser.set_defaults(func=run_models)
    actions = parser.add_subparsers(dest="models_command", required=True)

    def action(name: str, func: object, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        p.add_argument("--model", default=default_model, help=f"model name (default {default_model!r})")
        p.set_defaults(action=func)
        return p

    p = action("list", cmd_list, "every version and its status")
    p.set_defaults(model=None)
    p = action("show", cmd_show, "one version in full (without the artifact bytes)")
    p.add_argument("version", type=int)
    p = action("register", cmd_register, "register an ONNX file or a TabularMLP state dict (.pt)")
    p.add_argument("file", type=Path)
    p.add_argument("--features", required=True, help="feature names in input order, comma-separated")
    p.add_argument("--classes", required=True, help="class names in score order, comma-separated")
    p.add_argument("--types", default="", help="typed inputs: a type per feature (float, int, category; ? when "
                   "optional), comma-separated; the model then takes the events' named fields")  # fmt: skip
    p.add_argument("--hidden", default="", help="hidden widths of a .pt state dict, e.g. 64,32")
    p.add_argument("--outputs", default="probabilities", choices=["probabilities", "logits"],
                   help="what the model's scores are; logits get a softmax when loaded")  # fmt: skip
    p.add_argument("--status", default="candidate", choices=["candidate", "shadow", "serving"])
    p = action("bootstrap", cmd_bootstrap, "train a first version from a dataset (.npz) or synthetic data")
    p.add_argument("--dataset", type=Path, help=".npz with x, y (optional feature_names; classes, else y's values)")
    p.add_argument("--features", type=int, default=8, help="synthetic data: number of features")
    p.add_argument("--classes", type=int, default=2, help="synthetic data: number of classes")
    p.add_argument("--rows", type=int, default=20000, help="synthetic data: rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--family",
        default="mlp",
        choices=list(FAMILIES),
        help="a built-in family: the tabular MLP or gradient-boosted trees",
    )
    p.add_argument("--epochs", type=int, default=TrainConfig().epochs, help="epochs of the MLP")
    p.add_argument("--serve", action="store_true", help="promote it to serving right away")
    p = action("promote", cmd_promote, "make a version serving (after the serving checks), a --canary, or --shadow")
    p.add_argument("version", type=int)
    arm = p.add_mutually_exclusive_group()
    arm.add_argument("--shadow", action="store_true", help="run it in shadow of the serving version instead")
    arm.add_argument("--canary", type=_share, metavar="SHARE",
                     help="serve this share of the entities (0 to 1) instead of the serving version; "
                          "the trainer ramps it when LOOPLINE_TRAINER_CANARY_STEPS is set")  # fmt: skip
    p.add_argument("--reason", default="promoted by hand")
    p = action("rollback", cmd_rollback, "put the previous version that passes its checks back to serving")
    p.add_argument("--to", type=int, help="the version to return to (default: the newest earlier one that passes)")
    p.add_argument("--reason", default="rolled back by hand")
    p = action("reproduce", cmd_reproduce, "retrain a version from its lineage on the CPU and compare the weights")
    p.add_argument("version", type=int)
