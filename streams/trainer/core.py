"""The trainer core: a window of outcomes and the registry in, a gated new version out (no Kafka).

A retrain trains a candidate on the older part of the window, of the family and on the rows that do
best on new data (:meth:`Trainer.choose`: each configured family, on all the training rows and on
their newest half, is trained on the older ones and scored on the newest), with the serving
version's hyper-parameters where it is of that family and the configured seed. It exports it to
ONNX, checks it as every serving version is checked, and runs both the candidate and what serves
(the serving version, or the version the workers fall back to when it fails its checks) through
the inference worker's loader on the held-out newest part. The gate (:func:`gate`) is a paired
comparison on those outcomes: the candidate serves only if its accuracy beats the serving one's by
more than ``min_improvement`` plus ``gate_standard_errors`` standard errors of the difference,
reaches ``min_accuracy`` and passes the model's regression set
(:mod:`loopline.trainer.regression`); otherwise it is published as rejected, with the figures as
the reason. A tie never passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from loopline.codec.typed import numeric_columns
from loopline.inference.loader import LoadedModel, ModelRejected
from loopline.models import ArtifactStore, ModelVersion, Registry, Status, make_version
from loopline.models.families import (
    FAMILIES,
    OPAQUE,
    PIPELINE,
    Config,
    config_from_strings,
    defaults,
    fit,
    onnx_bytes,
    probabilities,
)
from loopline.models.plugins import PluginConfig, provider
from loopline.models.registry import empty_lineage, fit_to_topic
from loopline.models.registry.admission import admit, serving_or_fallback
from loopline.models.runtime.device import resolve_device
from loopline.models.versions import package_versions
from loopline.quality import LOG_LOSS_FLOOR
from loopline.settings import InferenceSettings, KafkaSettings, RegistrySettings, TrainerSettings
from loopline.trainer.canary import go_live
from loopline.trainer.gate import gate
from loopline.trainer.regression import check_version
from loopline.trainer.staging import STAGING_METRIC
from loopline.trainer.window import Window

__all__ = ["Decision", "Refused", "Trainer", "evaluate", "training_config", "training_rows"]

log = logging.getLogger(__name__)

CHOICE_MIN_ROWS = 200
"""Validation rows a choice of family or rows needs: on fewer, a standard error of more than 3 points
makes it noise, and the first training after a drift (a few hundred outcomes) keeps the serving
version's family and is not slowed by trainings it would not trust."""


class Refused(Exception):
    """A retrain that can't be done; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Decision:
    """What a retrain produced: the records to publish, in order, and why."""

    candidate: ModelVersion
    promoted: bool
    reason: str
    records: list[ModelVersion]

    def stale(self, change: str) -> Decision:
        """The candidate rejected instead: the registry moved (``change``) while it was trained and judged."""
        reason = f"the registry moved during the training ({change}); {self.reason}"
        candidate = replace(self.candidate, status=Status.REJECTED, traffic=0.0, reason=reason)
        return Decision(candidate, False, reason, [candidate])


def evaluate(loaded: LoadedModel, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Which rows of ``x``/``y`` a version loaded (and checked) by the inference worker's loader gets
    right, and its log loss on them."""
    scores = loaded.backend.predict(np.ascontiguousarray(x, dtype=np.float32))
    log_loss = float(-np.log(np.maximum(scores[np.arange(len(y)), y], LOG_LOSS_FLOOR)).mean())
    return scores.argmax(axis=1) == y, log_loss


def training_rows(window: Window, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of the outcomes whose label is one of ``classes``, in window order."""
    known = np.asarray([label in classes for label in window.labels], dtype=bool)
    y = np.asarray([classes.index(label) for label in window.labels if label in classes], dtype=np.int64)
    return window.x[known] if len(known) else window.x, y


def family_of(version: ModelVersion) -> str:
    """The family of ``version`` as its lineage records it (an MLP where it names none)."""
    return version.lineage.get("hyperparameters", {}).get("family", "mlp")


def training_config(version: ModelVersion, seed: int, family: str) -> Config:
    """The hyper-parameters of ``version`` for ``family`` (the family's defaults where ``version`` is of
    another family or records none), with ``seed``."""
    recorded = version.lineage.get("hyperparameters", {}) if family_of(version) == family else {}
    if family == PIPELINE:  # a pipeline's steps are its version's own: no defaults
        return config_from_strings(recorded | {"seed": str(seed)})
    return config_from_strings(defaults(family).as_strings() | recorded | {"seed": str(seed)})


def families_for(version: ModelVersion, configured: list[str]) -> list[str]:
    """The families a retrain of ``version`` chooses from: its own alone when it is a scikit-learn pipeline
    (whose steps are the version's) or takes typed inputs (which only its own family is known to take);
    else the configured ones, its own first.

    Raises:
        Refused: ``version`` was registered from a file, without code that could train it again.
    """
    own = family_of(version)
    if own == OPAQUE:
        raise Refused("no-training-code", f"version {version.version} of {version.model_name!r} was registered "
                      "from a model file, without its training code: register it as a scikit-learn pipeline "
                      "or with a plug-in family to have it retrained")  # fmt: skip
    if own == PIPELINE or version.feature_types:
        return [own]
    return sorted(configured, key=lambda family: family != own)


class Trainer:
    """Trains, gates and describes new versions of any registered model."""

    def __init__(self, settings: TrainerSettings, store: ArtifactStore, registry: RegistrySettings,
                 checks: InferenceSettings,
                 max_message_bytes: int = KafkaSettings.model_fields["max_message_bytes"].default) -> None:  # fmt: skip
        """``checks``: the inference workers' settings for the checks that what serves and every candidate
        pass (:func:`admit`), on the CPU. ``max_message_bytes``: the largest record the model-versions topic takes
        (``LOOPLINE_KAFKA_MAX_MESSAGE_BYTES``); a candidate whose record would be larger carries its
        artifact by URI (:func:`loopline.models.registry.fit_to_topic`)."""
        self.settings, self.store, self.registry_settings = settings, store, registry
        self.max_message_bytes = max_message_bytes
        self.checks = checks

    def warm_up(self) -> None:
        """Train and export a tiny model once, at start.

        torch's first optimizer step imports its compiler stack (about 1.5 s here, several seconds
        on a busy machine); paid at start, the first retrain after a drift is as fast as the next.
        """
        x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64)
        for family in self.settings.family_names:
            if family in FAMILIES:  # a plug-in's own code is not run on made-up data
                onnx_bytes(fit(FAMILIES[family](), x, y, 2, threads=self.settings.threads))

    def serving(self, registry: Registry, model_name: str) -> LoadedModel:
        """What actually serves ``model_name``: the version the inference workers serve, checked as they check it.

        Raises:
            Refused: the model is unknown, or has no serving version that passes its checks.
        """

        def rejected(version: ModelVersion, exc: ModelRejected) -> None:
            log.warning("version %d of %s fails its checks, not gating against it: %s", version.version,
                        model_name, exc)  # fmt: skip

        if registry.serving(model_name) is None:
            known = "has no serving version" if registry.versions(model_name) else "is not a registered model"
            raise Refused("unknown-model", f"{model_name!r} {known}")
        loaded = serving_or_fallback(registry, model_name, self.checks, self.store, rejected)
        if loaded is None:
            raise Refused("model-rejected", f"no serving or retired version of {model_name!r} passes its checks")
        return loaded

    def choose(self, configs: list[Config], x: np.ndarray, y: np.ndarray, n_classes: int,
               device: str) -> tuple[Config, float, dict[str, float], str]:  # fmt: skip
        """The family and the rows to train on, chosen by what does best on the newest data.

        Each of ``configs`` is trained on the older rows of ``x``/``y``, and again on the newest half
        of them when that half holds ``min_events`` rows (after a gradual drift, the older rows
        still mix in the old world); each model is scored on the newest ``holdout_fraction`` of the
        rows. The most accurate wins; on a tie the first of ``configs``, and all rows before half.

        Returns:
            The config, the share of the oldest rows to leave out (0 or 0.5), the validation
            accuracies as metrics (``validation_accuracy.<family>[.newest_half]``) and the choice in
            words. With fewer than :data:`CHOICE_MIN_ROWS` validation rows, or one config and too
            few rows for a half, the first config is taken without training.
        """
        validation = max(1, int(len(y) * self.settings.holdout_fraction))
        split = len(y) - validation
        skips = [0.0] + ([0.5] if split - split // 2 >= self.settings.min_events else [])
        if validation < CHOICE_MIN_ROWS or (len(configs) == 1 and len(skips) == 1):
            return configs[0], 0.0, {}, ""
        scores = {}
        for config in configs:
            for skip in skips:
                start = int(split * skip)
                model = fit(config, x[start:split], y[start:split], n_classes, device, self.settings.threads)
                name = config.family + (".newest_half" if skip else "")
                scores[config, skip, name] = float((probabilities(model, x[split:]).argmax(axis=1) == y[split:]).mean())
        best = max(scores, key=lambda key: scores[key])
        others = ", ".join(f"{name} {score:.4f}" for (_, _, name), score in scores.items() if name != best[2])
        words = (f"{best[2].replace('.newest_half', ' on the newest half')} chosen: validation accuracy "
                 f"{scores[best]:.4f} against {others} on the newest {validation} training outcomes")  # fmt: skip
        return best[0], best[1], {f"validation_accuracy.{name}": score for (_, _, name), score in scores.items()}, words

    def _still_good(self, serving: ModelVersion, accuracy: float, n: int) -> str:
        """Words for a serving version that does as well on the held-out outcomes as when it was trained
        (within ``gate_standard_errors`` standard errors): the drift needs no new version."""
        trained = serving.metrics.get("holdout_accuracy")
        if trained is None:
            return ""
        se = (max(trained * (1 - trained), 1e-6) / n) ** 0.5
        if accuracy < trained - self.settings.gate_standard_errors * se:
            return ""
        return (f"; version {serving.version} does as well as when it was trained ({accuracy:.4f} against "
                f"{trained:.4f}): no new version is needed")  # fmt: skip

    def retrain(self, registry: Registry, model_name: str, window: Window, why: str,
                requests_read: Mapping[int, int] | None = None) -> Decision:  # fmt: skip
        """Train a candidate for ``model_name`` on ``window`` and gate it against what serves.

        The candidate goes through the same checks as every serving version (:func:`admit`); one
        that fails them is published as rejected, with the failed check as the reason. Its lineage
        records ``requests_read``, the end of each retrain-requests partition when ``window`` was
        read: the requests it answers (:func:`loopline.trainer.requests.answered_by`).

        Raises:
            Refused: the model is unknown, nothing that may serve passes its checks, or the window
                is too small.
        """
        served = self.serving(registry, model_name)
        serving = served.version
        x, y = training_rows(window, serving.classes)
        if len(y) < self.settings.min_events:
            raise Refused("too-few-outcomes", f"{len(y)} labeled outcomes of {model_name!r} in the window, "
                          f"{self.settings.min_events} needed")  # fmt: skip
        holdout = max(1, int(len(y) * self.settings.holdout_fraction))
        split = len(y) - holdout
        families = families_for(serving, self.settings.family_names)
        device = resolve_device(self.settings.device)
        log.info("training %s on %d outcomes (%d held out) on %s: %s", model_name, split, holdout, device, why)
        start = time.perf_counter()
        config, skip, validation, choice = self.choose(
            [training_config(serving, self.settings.seed, family) for family in families],
            x[:split], y[:split], len(serving.classes), device,
        )  # fmt: skip
        first = int(split * skip)
        model = fit(config, x[first:split], y[first:split], len(serving.classes), device, self.settings.threads)
        duration_ms = int((time.perf_counter() - start) * 1000)
        reference = x[first:split].astype(np.float64)
        metrics = {"train_start_row": float(first), "train_rows": float(split - first),
                   "holdout_rows": float(holdout)} | validation  # fmt: skip
        for column in numeric_columns(serving.feature_types, len(serving.feature_names)):
            values = reference[:, column][~np.isnan(reference[:, column])]  # a typed input's missing values
            if len(values):
                metrics[f"reference_mean.{serving.feature_names[column]}"] = float(values.mean())
                metrics[f"reference_std.{serving.feature_names[column]}"] = float(values.std())
        lineage = empty_lineage() | {
            "parent_version": serving.version,
            "data": window.ranges,
            "code_version": package_versions().get("loopline", ""),
            "hyperparameters": config.as_strings(),
            "seed": config.seed,
            "packages": package_versions() | (provider(config.family) if isinstance(config, PluginConfig) else {}),
            "device": device if config.family == "mlp" else "cpu",
            "duration_ms": duration_ms,
            "requests": [{"partition": p, "end": end} for p, end in sorted((requests_read or {}).items())],
        }
        draft = make_version(
            model, model_name=model_name, version=registry.next_version(model_name),
            feature_names=serving.feature_names, feature_types=serving.feature_types, classes=serving.classes,
            store=self.store,
            metrics=metrics, lineage=lineage,
        )  # fmt: skip
        draft = fit_to_topic(draft, self.store, self.max_message_bytes)
        try:
            checked = admit(registry, draft, self.checks, self.store)
        except ModelRejected as exc:
            reason = f"checks failed: {exc}; {why}"
            candidate = replace(draft, metrics=metrics, status=Status.REJECTED, reason=reason)
            log.warning("%s v%d: %s", model_name, candidate.version, reason)
            return Decision(candidate, False, reason, [candidate])
        candidate_correct, candidate_loss = evaluate(checked, x[split:], y[split:])
        serving_correct, serving_loss = evaluate(served, x[split:], y[split:])
        verdict = gate(candidate_correct, serving_correct, self.settings)
        metrics |= {"holdout_accuracy": verdict.candidate, "holdout_log_loss": candidate_loss,
                    "serving_holdout_accuracy": verdict.serving, "serving_holdout_log_loss": serving_loss,
                    "holdout_difference_se": verdict.difference_se}  # fmt: skip
        figures = f"version {serving.version} serving; {choice + '; ' if choice else ''}{verdict.figures}"
        draft = replace(draft, metrics=metrics)
        passed = verdict.passed
        if passed:
            draft, cases = check_version(self.registry_settings, draft, checked, served)
            passed = cases.passed
            figures += f"; {cases.figures}" if passed and cases.figures else ""
        staging = self.settings.staging_outcomes
        if passed and staging:
            reason = f"staged: gate passed: {figures}; serves once it does better on {staging} live outcomes; {why}"
            candidate = replace(draft, status=Status.SHADOW, metrics=draft.metrics | {STAGING_METRIC: float(staging)},
                                reason=reason)  # fmt: skip
            earlier = registry.shadow(model_name)
            records = [candidate]
            if earlier is not None and STAGING_METRIC in earlier.metrics:
                records.insert(0, earlier.with_status(Status.REJECTED, f"superseded by version {draft.version}, "
                                                                       "staged before its live verdict"))  # fmt: skip
            passed = False
        elif passed:
            reason = f"gate passed: {figures}; {why}"
            registry.apply(replace(draft, reason=reason))
            records = go_live(registry, model_name, draft.version, reason, self.settings.canary_shares)
            candidate = records[-1]
            passed = candidate.status == Status.SERVING
        else:
            failed = f"{cases.figures}; gate passed: {figures}" if verdict.passed else f"gate failed: {figures}"
            still_good = "" if verdict.passed else self._still_good(serving, verdict.serving, holdout)
            reason = f"{failed}{still_good}; {why}"
            candidate = replace(draft, status=Status.REJECTED, reason=reason)
            records = [candidate]
        log.info("%s v%d: %s", model_name, candidate.version, reason)
        return Decision(candidate, passed, reason, records)
