"""Acceptance: the whole loop on a small drifting stream, through the demo, against the session broker."""

import pytest

from loopline.demo import run_demo
from loopline.settings import BrokerSettings, ClickHouseSettings, DemoSettings, RegistrySettings

pytestmark = pytest.mark.slow  # a long integration test: `make test-quick` leaves it out


def test_the_loop_notices_the_drift_retrains_and_recovers_and_stores_every_event_once(kafka, tmp_path, capsys):
    settings = DemoSettings(events=8000, rate=400, concept_drift_at=1200, covariate_drift_at=7200, label_delay=50,
                            report_dir=tmp_path / "reports")  # fmt: skip
    report = run_demo(
        kafka,
        BrokerSettings(data_dir=tmp_path / "unused"),
        ClickHouseSettings(dsn=f"chdb://{tmp_path / 'store'}"),  # the sink's own: one chdb directory per process
        RegistrySettings(artifact_dir=tmp_path / "artifacts"),
        settings,
    )
    out = capsys.readouterr().out
    f = report.figures
    assert f["accuracy_before_drift"] > 0.85
    assert f["accuracy_worst_rolling"] < f["accuracy_before_drift"] - 0.2  # the drift hurt
    assert f["detection_s"] is not None and f["detection_labeled_events"] > 0
    assert any(e["kind"] == "retrain request" for e in report.timeline)
    assert f["new_version_serving_s"] is not None  # a new version was promoted and served
    first = next(e for e in report.timeline if e["kind"] == "version serving" and e["version"] > 1)
    staged = [e for e in report.timeline if e["kind"] == "version shadow" and e["version"] == first["version"]]
    assert first["detail"].startswith("staging passed: live, on the same events") and staged  # after its shadow run
    assert staged[0]["t"] <= first["t"] and staged[0]["detail"].startswith("staged: gate passed")
    assert f["accuracy_after"] > f["accuracy_before_drift"] - 0.12  # and it recovered
    # Every valid feature event has exactly one served prediction in ClickHouse.
    assert report.counts["predictions"] == report.counts["events_predicted"] == 8000
    # The malformed events, and only they, are dead letters.
    assert sum(d["letters"] for d in report.dead_letters) == 3
    assert {d["agent"] for d in report.dead_letters} == {"inference"}
    folder = next((tmp_path / "reports").iterdir())
    assert (folder / "accuracy.png").stat().st_size > 10_000
    assert "drift onset → detection" in (folder / "summary.md").read_text()
    assert "accuracy" in out and "report     " in out
