"""The errors a command or a starting worker reports as one line and exit code 2 (``loopline.cli.main``).

They mean "the setup is wrong or a service is not there", not "loopline is broken": the message
names what to fix, and a traceback would only hide it.
"""

from __future__ import annotations

__all__ = ["ConfigError", "Unreachable"]


class ConfigError(ValueError):
    """A setting, an option or the cluster's state can't be used as given; the message says what to do instead."""


class Unreachable(ConnectionError):
    """A service loopline needs (Kafka, ClickHouse) does not answer; the message says where it was looked for."""
