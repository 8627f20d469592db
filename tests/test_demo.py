from streams.demo import run_demo
from streams.settings import BrokerSettings, InferenceSettings, RegistrySettings


def test_the_demo_serves_a_model_and_dead_letters_the_malformed_events(kafka, clickhouse, tmp_path, capsys):
    registry = RegistrySettings(artifact_dir=tmp_path / "artifacts")
    run_demo(kafka, BrokerSettings(data_dir=tmp_path / "unused"), clickhouse, registry, InferenceSettings(), events=50)
    out = capsys.readouterr().out
    assert f"using the broker at {kafka.bootstrap_servers}" in out
    assert "trained default v1" in out and "predicted  50/50 events" in out
    assert out.count("\ndead       ") == 2 and "corrupt" in out
