import json
import os
import socket
import uuid

import pytest

from loopline.kafka.broker import Broker, BrokerError, _port_in_use, free_port
from loopline.kafka.clients import read_topic, send_all
from loopline.kafka.topics import create_topics
from loopline.settings import BrokerSettings, KafkaSettings


def test_the_session_broker_answers(broker):
    status = broker.status()
    assert status.running and status.pid is not None
    assert status.bootstrap_servers == broker.bootstrap_servers


def test_starting_a_running_broker_is_a_no_op(broker):
    pid = broker.status().pid
    assert broker.start() == broker.bootstrap_servers
    assert broker.status().pid == pid


def test_a_stop_and_start_keeps_produced_records(tmp_path):
    local = Broker(BrokerSettings(data_dir=tmp_path / "kafka", port=0))
    servers = local.start()
    try:
        kafka = KafkaSettings(bootstrap_servers=servers, topic_prefix="restart.", partitions=1)
        create_topics(kafka)
        send_all(kafka, kafka.topic("labels"), [(b"k", b"kept across restarts")])
        assert local.stop() is True
        assert not local.status().running
        assert local.start() == servers  # same port, same data
        messages = read_topic(kafka, kafka.topic("labels"), until=lambda m: len(m) >= 1)
        assert [m.value() for m in messages] == [b"kept across restarts"]
    finally:
        local.stop()
    assert local.stop() is False


def test_only_a_listener_makes_a_port_in_use():
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Java's server sockets on Linux
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _port_in_use(port)
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: TIME_WAIT lands on the listener's port
    with socket.socket() as plain, pytest.raises(OSError):  # the port is held: a plain bind fails
        plain.bind(("127.0.0.1", port))
    assert not _port_in_use(port)


def test_a_cluster_id_that_looks_like_an_option_formats(tmp_path):
    # Cluster ids are url-safe base64: one in 64 starts with "-", which must not read as a flag.
    local = Broker(BrokerSettings(data_dir=tmp_path, port=0))
    tmp_path.mkdir(exist_ok=True)
    local.state_file.write_text(json.dumps({"port": free_port(), "controller_port": free_port(),
                                            "cluster_id": "-" + "A" * 21}))  # fmt: skip
    try:
        local.start()
        assert local.status().running
    finally:
        local.stop()


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} .* already in use"):
            Broker(BrokerSettings(data_dir=tmp_path, port=port)).start()


def test_missing_java_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"`java` was not found.*openjdk"):
        Broker(BrokerSettings(data_dir=tmp_path / str(uuid.uuid4()), port=0)).start()


def test_missing_maven_says_what_to_install(tmp_path, monkeypatch):
    from loopline.kafka.broker import fetch_classpath

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match=r"`mvn` was not found.*maven"):
        fetch_classpath(tmp_path, refresh=True)
    assert not os.listdir(tmp_path)
