"""Every query of docs/sql-cookbook.md runs on real data and answers."""

import re

import pytest

from streams.codec import Codec
from streams.deadletters import SourceRecord
from streams.paths import REPO_ROOT
from streams.settings import KafkaSettings
from streams.sink.core import SinkCore
from streams.store import connect, migrate
from tests.samples import TOPIC_SCHEMA, analytics_records

COOKBOOK = (REPO_ROOT / "docs" / "sql-cookbook.md").read_text()
EXAMPLES = re.findall(r"```sql\n(.*?)```", COOKBOOK, flags=re.DOTALL)


@pytest.fixture(scope="module")
def client(chdb_dir):
    from streams.settings import ClickHouseSettings

    settings = ClickHouseSettings(dsn=f"chdb://{chdb_dir}", database="cookbook")
    client = connect(settings)
    migrate(client)
    kafka = KafkaSettings(topic_prefix="")
    core = SinkCore(kafka)
    records = [
        SourceRecord(None, Codec.load(TOPIC_SCHEMA[topic]).encode(row), topic, 0, offset, 0)
        for topic, rows in analytics_records().items()
        for offset, row in enumerate(rows)
    ]
    for table, rows in core.rows(records).rows.items():
        client.insert(table.table, rows, column_names=list(table.columns))
    yield client
    client.close()


def test_the_cookbook_has_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("sql", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_each_example_answers(client, sql):
    assert client.query(sql).result_rows
