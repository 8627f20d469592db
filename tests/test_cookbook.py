"""Every query of docs/sql-cookbook.md runs on real data and answers."""

import re

import pytest

from loopline.settings import ClickHouseSettings
from loopline.store import connect
from tests.helpers import REPO_ROOT
from tests.samples import load_analytics_records

COOKBOOK = (REPO_ROOT / "docs" / "sql-cookbook.md").read_text()
EXAMPLES = re.findall(r"```sql\n(.*?)```", COOKBOOK, flags=re.DOTALL)


@pytest.fixture(scope="module")
def client(chdb_dir):
    client = connect(ClickHouseSettings(dsn=f"chdb://{chdb_dir}", database="cookbook"))
    load_analytics_records(client)
    yield client
    client.close()


def test_the_cookbook_has_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("sql", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_each_example_answers(client, sql):
    assert client.query(sql).result_rows
