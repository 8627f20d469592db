"""Files loopline reads besides its Python code, and where it caches the local broker's classpath.

The Avro schemas, the ClickHouse DDL and the local broker's Maven project live in ``schemas/``,
``ops/clickhouse/`` and ``ops/kafka/`` of the repository, where producers in other languages,
docker-compose.yml and the docs find them. The package carries them as ``streams/resources``
(links to those directories in a checkout, copies in a wheel), found with :mod:`importlib.resources`:
an installed wheel works from any directory.
"""

import os
from importlib.resources import files
from pathlib import Path


def _resources() -> Path:
    found = files("loopline") / "resources"
    if not isinstance(found, Path):  # a zipped install: Maven and Java need files on disk
        raise RuntimeError("loopline must be installed as files, not zipped: it reads its schemas and DDL from disk")
    return found


RESOURCES = _resources()
SCHEMAS_DIR = RESOURCES / "schemas"
CLICKHOUSE_DIR = RESOURCES / "clickhouse"
KAFKA_DIR = RESOURCES / "kafka"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loopline"
"""Per-user cache: the local broker's resolved classpath (its jars stay in Maven's ``~/.m2``)."""
