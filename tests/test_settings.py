import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from loopline.cli import main
from loopline.kafka.broker import BrokerError, local_kafka_settings
from loopline.reference import variable
from loopline.settings import (
    ClickHouseSettings,
    DriftSettings,
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


def test_the_trainer_families_are_named_once_each_and_an_unknown_one_stops_the_trainer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOPLINE_BROKER_DATA_DIR", str(tmp_path))  # no local broker recorded
    monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", " trees, mlp,trees")
    assert TrainerSettings().family_names == ["trees", "mlp"]
    monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", ",")
    with pytest.raises(ValidationError, match="families must name one model family at least"):
        TrainerSettings()
    monkeypatch.setenv("LOOPLINE_TRAINER_FAMILIES", "trees,forest")
    assert TrainerSettings().family_names == ["trees", "forest"]  # whether it is installed is the worker's check
    assert main(["worker", "trainer"]) == 2
    assert capsys.readouterr().err == (
        "loopline: bad setting LOOPLINE_TRAINER_FAMILIES='trees,forest': families must name some of mlp, trees, "
        "not forest\n"
    )


def test_settings_import_nothing_and_read_no_file(tmp_path):
    """Every class builds without River, the broker code or a file: not even a local broker's unreadable state."""
    (tmp_path / "broker.json").write_text("{")
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOOPLINE_")}
    code = (
        "import sys\n"
        "from loopline.settings import all_settings_classes\n"
        "built = [cls() for cls in all_settings_classes()]\n"
        "print(built[0].bootstrap_servers)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('river', 'torch', 'confluent_kafka')"
        " or name.startswith('loopline.') and not name.startswith('loopline.settings')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env | {"LOOPLINE_BROKER_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.splitlines() == ["127.0.0.1:9092", "[]"]


def test_a_bad_drift_detector_parameter_stops_the_drift_worker_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOOPLINE_BROKER_DATA_DIR", str(tmp_path))  # no local broker recorded
    monkeypatch.setenv("LOOPLINE_DRIFT_COVARIATE_PARAMS", '{"delta": 0.001, "nope": 1}')
    assert DriftSettings().covariate_params == {"delta": 0.001, "nope": 1}  # the settings hold it as given
    assert main(["worker", "drift"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loopline: bad setting LOOPLINE_DRIFT_COVARIATE_PARAMS: bad parameters for ADWIN: ")


def test_every_field_is_documented():
    for cls in all_settings_classes():
        assert cls.model_config["env_prefix"].startswith("LOOPLINE_")
        assert cls.__doc__, f"{cls.__name__} has no docstring"
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no docstring"


def test_the_configuration_reference_lists_every_variable_with_its_description():
    rows = {}
    for line in (REPO_ROOT / "docs" / "reference" / "configuration.md").read_text().splitlines():
        if line.startswith("| `LOOPLINE_"):
            rows[line.split("`")[1]] = line
    for cls in all_settings_classes():
        for name, field in cls.model_fields.items():
            row = rows.pop(variable(cls, name))
            words = field.description.replace("``", "`").split()
            assert " ".join(words) in row, variable(cls, name)
    assert not rows, f"variables no settings class has: {sorted(rows)}"


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


def test_without_an_address_the_commands_reach_the_local_broker_recorded_by_kafka_start(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("LOOPLINE_BROKER_DATA_DIR", str(tmp_path))
    assert local_kafka_settings().bootstrap_servers == "127.0.0.1:9092"  # no local broker recorded there
    (tmp_path / "broker.json").write_text(json.dumps({"port": 41234, "controller_port": 41235, "cluster_id": "c"}))
    assert local_kafka_settings().bootstrap_servers == "127.0.0.1:41234"
    assert KafkaSettings().bootstrap_servers == "127.0.0.1:9092"  # the settings themselves read no file
    monkeypatch.setenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert local_kafka_settings().bootstrap_servers == "127.0.0.1:9092"  # an address that is set wins, even this one
    monkeypatch.delenv("LOOPLINE_KAFKA_BOOTSTRAP_SERVERS")
    (tmp_path / "broker.json").write_text("{")
    with pytest.raises(BrokerError, match=r"broker\.json is unreadable"):
        local_kafka_settings()
