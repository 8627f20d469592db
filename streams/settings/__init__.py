"""Settings, one class per concern, read from ``LOOPLINE_*`` environment variables.

A settings class is a value: building one reads its own variables and nothing else (no file, no
broker, no optional library), so it is built once where a program starts (the ``loopline``
command line, and the worker it runs: ``loopline.agents.app.run_worker``) and passed into the
constructors that need it; nothing reads settings from globals. Facts of the host are resolved
there too: the address of the local broker (``loopline.kafka.broker.local_kafka_settings``), and
the checks that need a library (the drift detectors' parameters, the installed model families).
``docs/reference/configuration.md`` is generated from these classes (``python -m loopline.reference``).
"""

from __future__ import annotations

import pydantic_settings

from loopline.settings.demo import DemoSettings
from loopline.settings.kafka import BrokerSettings, KafkaSettings
from loopline.settings.models import InferenceSettings, RegistrySettings, TrainerSettings
from loopline.settings.store import ClickHouseSettings, SinkSettings, StateSettings
from loopline.settings.workers import DriftSettings, JoinSettings, MetricsSettings

__all__ = [
    "BrokerSettings",
    "ClickHouseSettings",
    "DemoSettings",
    "DriftSettings",
    "InferenceSettings",
    "JoinSettings",
    "KafkaSettings",
    "MetricsSettings",
    "RegistrySettings",
    "SinkSettings",
    "StateSettings",
    "TrainerSettings",
    "all_settings_classes",
]


def all_settings_classes() -> list[type[pydantic_settings.BaseSettings]]:
    """Every settings class, in the order of the configuration reference."""
    return [
        KafkaSettings,
        BrokerSettings,
        ClickHouseSettings,
        RegistrySettings,
        InferenceSettings,
        JoinSettings,
        DriftSettings,
        StateSettings,
        SinkSettings,
        TrainerSettings,
        DemoSettings,
        MetricsSettings,
    ]
