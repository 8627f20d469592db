"""The query rules: which statements run, and the functions they may call."""

import re

import pytest

from loopline.analytics.queries import OUTSIDE, QUERIES, QueryError, read_only_statement
from loopline.store import connect
from tests.helpers import REPO_ROOT

LOCAL = {
    "SQLStandardValues", "dictionary", "format", "fuzzJSON", "fuzzQuery", "generateRandom", "generateSeries",
    "generate_series", "loop", "merge", "mergeTreeAnalyzeIndexes", "mergeTreeAnalyzeIndexesUUID",
    "mergeTreeCodecBlockCounts", "mergeTreeIndex", "mergeTreeProjection", "mergeTreeTextIndex", "null", "numbers",
    "numbers_mt", "primes", "prometheusQuery", "prometheusQueryRange", "timeSeriesData", "timeSeriesMetricFamilies",
    "timeSeriesMetrics", "timeSeriesSamples", "timeSeriesSelector", "timeSeriesTags", "values", "view",
    "viewExplain", "viewIfPermitted", "zeros", "zeros_mt",
}  # fmt: skip
"""Table functions that read generated data or the store's own tables."""


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "with t AS (SELECT 1 AS a) SELECT a FROM t",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "  -- a comment first\n/* and another */ SELECT 2",
        "SHOW TABLES",
        "DESCRIBE TABLE predictions",
        "desc predictions",
        "EXPLAIN PIPELINE SELECT 1",
        "EXISTS TABLE predictions",
        "SELECT 'file(' AS s, `file`, \"url\" FROM t -- file('x') INTO OUTFILE 'y'",
        "SELECT 'INTO OUTFILE' AS into, 1 AS outfile",
        "SELECT profile(1), filesystemAvailable(), URLHierarchy('http://a/b'), cutURLParameter('x', 'y')",
        "SELECT $$ file('x') $$, $t$ into outfile $t$",
        "SELECT * FROM numbers(10) WHERE number IN (SELECT number FROM generateRandom('number UInt8') LIMIT 3)",
    ],
)
def test_statements_that_read_pass(sql):
    assert read_only_statement(sql) == sql


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SYSTEM STOP MERGES", "only statements that read"),
        ("system stop ttl merges", "only statements that read"),
        ("KILL QUERY WHERE 1 SYNC", "only statements that read"),
        ("USE system", "only statements that read"),
        ("SET max_threads = 1", "only statements that read"),
        ("/* SELECT */ INSERT INTO labels SELECT * FROM labels", "only statements that read"),
        ("(SYSTEM STOP MERGES)", "only statements that read"),
        ("`SELECT` 1", "only statements that read"),
        ("SELECT 'x' INTO OUTFILE 'v.txt' TRUNCATE", "INTO OUTFILE"),
        ("select 1 into /* c */ outfile 'v.txt' APPEND;", "INTO OUTFILE"),
        ("SHOW TABLES INTO OUTFILE 'v.txt'", "INTO OUTFILE"),
        ("SELECT file('/etc/passwd')", r"file\(\) reaches outside"),
        ("SELECT FILE ('/etc/passwd')", r"FILE\(\) reaches outside"),
        ("SELECT file -- a comment\n ('/etc/passwd')", r"file\(\) reaches outside"),
        ("SELECT arrayMap(x -> file(x), ['/etc/passwd'])", r"file\(\) reaches outside"),
        ("SELECT `file`('/etc/passwd')", "plain names"),
        ("SELECT \"fi\\x6ce\"('/etc/passwd')", "plain names"),
        ("DESCRIBE url('http://127.0.0.1:1/x', 'CSV')", r"url\(\) reaches outside"),
        ("SELECT * FROM s3Cluster('c', 'http://x/b/k')", r"s3Cluster\(\) reaches outside"),
        ("SELECT * FROM Python(settings)", r"Python\(\) reaches outside"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", r"remote\(\) reaches outside"),
        ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", r"executable\(\) reaches outside"),
    ],
)
def test_statements_that_write_control_or_reach_outside_are_refused(sql, reason):
    with pytest.raises(QueryError, match=reason):
        read_only_statement(sql)


def test_every_table_function_of_the_store_is_known_as_local_or_outside(clickhouse):
    """A table function that a new chdb brings is neither, and fails here until it is judged."""
    client = connect(clickhouse)
    try:
        names = {row[0] for row in client.query("SELECT name FROM system.table_functions").result_rows}
    finally:
        client.close()
    assert {name for name in names if name not in LOCAL and name.lower() not in OUTSIDE} == set()
    assert not {name.lower() for name in LOCAL} & OUTSIDE


def test_the_canned_queries_and_the_cookbook_pass_the_rules():
    cookbook = re.findall(r"```sql\n(.*?)```", (REPO_ROOT / "docs" / "sql-cookbook.md").read_text(), flags=re.DOTALL)
    for sql in [query.sql for query in QUERIES.values()] + cookbook:
        assert read_only_statement(sql) == sql
