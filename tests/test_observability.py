"""The Grafana dashboard and a real Prometheus server scraping a running worker."""

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

import prometheus_client
import pytest
import yaml

import loopline.metrics  # noqa: F401 (registers every loopline metric)
from loopline.codec import Codec
from loopline.kafka.clients import send_all
from loopline.kafka.topics import create_topics
from tests.helpers import REPO_ROOT
from tests.workers import free_port, wait_for, worker

OPS_DIR = REPO_ROOT / "ops"
DASHBOARD = json.loads((OPS_DIR / "grafana" / "dashboards" / "loopline.json").read_text())
EXPRESSIONS = [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def exported_names():
    names = set()
    for collector in list(prometheus_client.REGISTRY._collector_to_names):
        for family in collector.collect():
            names |= {sample.name for sample in family.samples} | {family.name}
    return names


def test_the_dashboard_only_plots_metrics_that_loopline_exports():
    used = {name for expr in EXPRESSIONS for name in re.findall(r"\bloopline_[a-z_]+", expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    exported = {name for name in exported_names() if name.startswith("loopline_")}
    assert used and families <= {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}


def test_grafana_is_provisioned_with_the_dashboard_folder():
    provider = yaml.safe_load((OPS_DIR / "grafana" / "provisioning" / "dashboards" / "loopline.yml").read_text())
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool here (Debian package 'prometheus')")
def test_promtool_accepts_the_scrape_configuration():
    check = subprocess.run(["promtool", "check", "config", str(OPS_DIR / "prometheus" / "prometheus.yml")],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="no prometheus server here (Debian package 'prometheus')"
)
def test_a_real_prometheus_scrapes_a_worker_and_answers_every_dashboard_query(kafka, tmp_path):
    create_topics(kafka)
    label = Codec.load("label")
    with worker("join", kafka, tmp_path) as join:
        config = yaml.safe_load((OPS_DIR / "prometheus" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["scrape_configs"] = [{"job_name": "loopline-join",
                                     "static_configs": [{"targets": [f"127.0.0.1:{join.metrics_port}"]}]}]  # fmt: skip
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        server = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            labels = [(f"e{i}", label.encode({"event_id": f"e{i}", "event_time": 0, "label": "yes"})) for i in range(5)]
            send_all(kafka, kafka.topic("labels"), labels)

            def scraped():
                found = query(port, 'loopline_events_in_total{agent="join"}')["data"]["result"]
                return found and float(found[0]["value"][1]) == 5

            wait_for(scraped, timeout_s=60, what="prometheus to scrape the worker's five records")
            assert query(port, 'up{job="loopline-join"}')["data"]["result"][0]["value"][1] == "1"
            for expr in EXPRESSIONS:
                assert query(port, expr)["status"] == "success", expr
        finally:
            server.terminate()
            server.wait(30)
