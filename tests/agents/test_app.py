"""``run_worker``, the worker ``loopline worker <agent>`` runs: settings that can't work stop it before it starts."""

import pytest

from loopline import KafkaSettings, run_worker
from loopline.errors import ConfigError


def test_an_unknown_agent_is_refused_by_name():
    with pytest.raises(ValueError, match="no agent 'relay': one of inference, join, drift, sink, trainer"):
        run_worker("relay", KafkaSettings())


def test_a_commit_interval_the_transactions_cannot_hold_stops_the_worker_before_it_reaches_kafka():
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", commit_interval_ms=10_000, transaction_timeout_ms=10_000)
    with pytest.raises(ConfigError, match="LOOPLINE_KAFKA_COMMIT_INTERVAL_MS"):
        run_worker("join", kafka)


def test_a_trainer_family_that_is_not_installed_stops_the_worker_by_its_setting(monkeypatch):
    monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", "mlp,forest")
    with pytest.raises(ConfigError, match=r"LOOPLINE_TRAINER_FAMILIES='mlp,forest'.*not forest"):
        run_worker("trainer", KafkaSettings(bootstrap_servers="127.0.0.1:1"))


def test_a_detector_that_refuses_its_parameters_stops_the_worker_by_its_setting(monkeypatch):
    monkeypatch.setenv("LOOPLINE_DRIFT_CONCEPT_PARAMS", '{"nope": 1}')
    with pytest.raises(ConfigError, match="bad setting LOOPLINE_DRIFT_CONCEPT_PARAMS: "):
        run_worker("drift", KafkaSettings(bootstrap_servers="127.0.0.1:1"))
