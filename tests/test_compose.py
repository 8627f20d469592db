"""docker-compose.yml can't run here: check that what it asks of loopline exists."""

from pathlib import Path

import pytest
import yaml

from loopline.cli import build_parser
from loopline.settings import all_settings_classes
from tests.helpers import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def loopline_services():
    return {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "loopline:latest"}


def setting_names():
    names = set()
    for cls in all_settings_classes():
        prefix = cls.model_config["env_prefix"]
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def test_there_are_loopline_services():
    assert {"topics", "db-migrate", "inference"} <= set(loopline_services())


def test_the_gpu_override_only_touches_loopline_services():
    override = yaml.safe_load((REPO_ROOT / "ops" / "compose" / "gpu.yml").read_text())
    for name, service in override["services"].items():
        assert name in loopline_services()
        assert set(service["environment"]) <= setting_names()


def test_prometheus_scrapes_every_worker_service():
    config = yaml.safe_load((REPO_ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    scraped = {name for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    workers = {name for name, svc in loopline_services().items() if svc["command"][1] == "worker"}
    assert workers and workers <= scraped


@pytest.mark.parametrize("name", sorted(loopline_services()))
def test_each_service_runs_a_real_loopline_command(name):
    command = loopline_services()[name]["command"]
    assert command[0] == "loopline"
    build_parser().parse_args(command[1:])  # exits (fails the test) on an unknown command


def test_each_loopline_variable_is_a_real_setting():
    names = setting_names()
    variables = {
        var for svc in COMPOSE["services"].values() for var in (svc.get("environment") or {})
        if var.startswith("LOOPLINE_")
    }  # fmt: skip
    assert variables
    assert variables <= names, variables - names


def test_mounted_config_files_exist():
    for svc in COMPOSE["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), source
    assert Path(REPO_ROOT / "Dockerfile").exists()
