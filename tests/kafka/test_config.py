import ssl

import faust
from pydantic import SecretStr

from loopline.kafka.config import confluent_config, faust_credentials
from loopline.settings import KafkaSettings


def sasl_settings(**extra):
    return KafkaSettings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("hunter2"),
        **extra,
    )


def test_plaintext_needs_no_credentials():
    settings = KafkaSettings(bootstrap_servers="b:9092")
    assert confluent_config(settings) == {
        "bootstrap.servers": "b:9092", "client.id": "loopline", "security.protocol": "PLAINTEXT",
    }  # fmt: skip
    assert faust_credentials(settings) is None


def test_sasl_reaches_both_client_stacks():
    settings = sasl_settings()
    conf = confluent_config(settings)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("svc", "hunter2")

    assert conf["bootstrap.servers"] == "b1:9093,b2:9093"

    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "svc" and creds.password == "hunter2"
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_ssl_only_gives_faust_ssl_credentials():
    settings = KafkaSettings(security_protocol="SSL")
    assert isinstance(faust_credentials(settings), faust.SSLCredentials)
    assert confluent_config(settings)["security.protocol"] == "SSL"


def test_secrets_stay_out_of_reprs():
    settings = sasl_settings(ssl_key_password=SecretStr("keypass"))
    assert "hunter2" not in repr(settings) and "keypass" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
