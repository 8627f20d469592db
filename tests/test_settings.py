import json

import pytest
from pydantic import ValidationError

from loopline.cli import main
from loopline.models.families import FAMILIES
from loopline.models.plugins import GROUP
from loopline.settings import (
    MODEL_FAMILIES,
    TRAINER_ENTRY_POINTS,
    ClickHouseSettings,
    InferenceSettings,
    KafkaSettings,
    TrainerSettings,
    all_settings_classes,
)
from tests.helpers import REPO_ROOT


def test_settings_come_from_prefixed_environment_variables(monkeypatch):
    monkeypatch.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("LOOPLINE_KAFKA_TOPIC_PREFIX", "tenant-a.")
    monkeypatch.setenv("LOOPLINE_INFERENCE_MAX_BATCH_SIZE", "256")
    kafka = KafkaSettings()
    assert kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert kafka.topic("features") == "tenant-a.features"
    assert InferenceSettings().max_batch_size == 256


def test_the_trainer_families_are_the_models_families_named_once_each(monkeypatch):
    assert tuple(FAMILIES) == MODEL_FAMILIES and TRAINER_ENTRY_POINTS == GROUP
    monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", " trees, mlp,trees")
    assert TrainerSettings().family_names == ["trees", "mlp"]
    for wrong in ("trees,forest", ","):
        monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", wrong)
        with pytest.raises(ValidationError, match="families must name some of mlp, trees"):
            TrainerSettings()


def test_every_field_is_documented():
    for cls in all_settings_classes():
        assert cls.model_config["env_prefix"].startswith("LOOPLINE_")
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no docstring"


def test_the_readme_lists_every_variable():
    readme = (REPO_ROOT / "README.md").read_text()
    for cls in all_settings_classes():
        for name in cls.model_fields:
            variable = f"{cls.model_config['env_prefix']}{name}".upper()
            assert f"`{variable}`" in readme, variable


def test_a_bad_value_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("LOOPLINE_KAFKA_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="partitions"):
        KafkaSettings()
    assert main(["topics", "create"]) == 2
    assert capsys.readouterr().err.startswith("loopline: bad setting LOOPLINE_KAFKA_PARTITIONS='zero': ")


def test_a_bad_database_name_is_refused():
    with pytest.raises(ValidationError, match="database"):
        ClickHouseSettings(database="x; DROP TABLE predictions")


def test_an_unknown_dsn_scheme_fails_the_command_with_the_fix(monkeypatch, capsys):
    monkeypatch.setenv("LOOPLINE_CLICKHOUSE_DSN", "mysql://db")
    assert main(["db", "migrate"]) == 2
    assert "chdb://<dir>" in capsys.readouterr().err


def test_a_dsn_no_client_can_open_is_refused_without_showing_its_password():
    with pytest.raises(ValidationError, match=r"unknown ClickHouse DSN scheme 'mysql'.*chdb://<dir>") as refused:
        ClickHouseSettings(dsn="mysql://loopline:s3cret@db:3306/x")
    assert "s3cret" not in str(refused.value)
    for dsn in ["http:///loopline", "https://s3cret@host:port/db", "http://host:0"]:
        with pytest.raises(ValidationError, match="dsn") as refused:
            ClickHouseSettings(dsn=dsn)
        assert "s3cret" not in str(refused.value)
    assert ClickHouseSettings(dsn="https://u:p@clickhouse:8443/db").dsn.get_secret_value().startswith("https://")


def test_without_an_address_kafka_settings_reach_the_local_broker_recorded_by_kafka_start(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("LOOPLINE_BROKER_DATA_DIR", str(tmp_path))
    assert KafkaSettings().bootstrap_servers == "127.0.0.1:9092"  # no local broker recorded there
    (tmp_path / "broker.json").write_text(json.dumps({"port": 41234, "controller_port": 41235, "cluster_id": "c"}))
    assert KafkaSettings().bootstrap_servers == "127.0.0.1:41234"
    assert KafkaSettings(bootstrap_servers="k1:9092").bootstrap_servers == "k1:9092"  # an address given wins
    monkeypatch.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert KafkaSettings().bootstrap_servers == "127.0.0.1:9092"  # even the default's value, when set
    monkeypatch.delenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS")
    (tmp_path / "broker.json").write_text("{")
    with pytest.raises(ValidationError, match=r"broker\.json"):
        KafkaSettings()
