"""Client configuration from :class:`KafkaSettings`, the same security for every client stack.

confluent-kafka (every loopline client) and Faust (the worker process, whose app still takes broker
credentials) name their options differently; both are derived here from the one settings object.
:func:`reach` is the check every command and worker makes first, with that same configuration.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from loopline.errors import ConfigError, Unreachable
from loopline.settings import KafkaSettings

__all__ = ["confluent_config", "faust_credentials", "reach", "ssl_context"]


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def confluent_config(settings: KafkaSettings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka configuration for confluent-kafka clients; ``extra`` keys are added on top."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
    }
    optional = {
        "sasl.mechanism": settings.sasl_mechanism,
        "sasl.username": settings.sasl_username,
        "sasl.password": _secret(settings.sasl_password),
        "ssl.ca.location": settings.ssl_cafile,
        "ssl.certificate.location": settings.ssl_certfile,
        "ssl.key.location": settings.ssl_keyfile,
        "ssl.key.password": _secret(settings.ssl_key_password),
    }
    config.update({key: str(value) for key, value in optional.items() if value is not None})
    return config | (extra or {})


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """A TLS context for Faust when the protocol uses SSL, else None."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        password=_secret(settings.ssl_key_password),
    )


def faust_credentials(settings: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """``broker_credentials`` for a Faust app (None for PLAINTEXT)."""
    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=_secret(settings.sasl_password),
            ssl_context=context,
            mechanism=settings.sasl_mechanism or "PLAIN",
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def reach(settings: KafkaSettings) -> ClusterMetadata:
    """The cluster's metadata, asked for once with a bounded wait.

    librdkafka retries an absent broker forever (a worker) or until a long timeout (a command),
    writing a line per attempt; this asks once, quietly, for ``settings.connect_timeout_s``.

    Raises:
        Unreachable: no broker answered in time; the message has the address and librdkafka's reason.
        ConfigError: librdkafka refuses the client configuration (e.g. a certificate file that is not there).
    """
    reasons: list[KafkaError] = []
    config = confluent_config(settings, {"log_level": 0, "error_cb": reasons.append})
    try:
        admin = AdminClient(config)
    except KafkaException as exc:
        raise ConfigError(f"the Kafka client configuration is refused: {_text(exc)}") from None
    try:
        return admin.list_topics(timeout=settings.connect_timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks: they say why (refused, unresolved, TLS)
        causes = [e.str() for e in reasons if e.code() != KafkaError._ALL_BROKERS_DOWN] or [_text(exc)]
        raise Unreachable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {causes[-1]} "
            f"(waited {settings.connect_timeout_s:g} s, LOOPLINE_KAFKA_CONNECT_TIMEOUT_S)"
        ) from None


def _text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
