"""Query results as plain columns and rows, printable as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.query import QueryResult

__all__ = ["Result"]


def _plain(value: Any) -> Any:
    """A JSON value for anything a query returns (times in ISO 8601 UTC, floats rounded to 6 digits)."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, float):
        return round(value, 6) if value == value else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class Result:
    """Column names and rows of JSON values."""

    columns: list[str]
    rows: list[list[Any]]

    @classmethod
    def of(cls, result: QueryResult) -> Result:
        return cls(list(result.column_names), [[_plain(v) for v in row] for row in result.result_rows])

    def to_json(self) -> str:
        """One JSON object per row, in an array."""
        return json.dumps([dict(zip(self.columns, row, strict=True)) for row in self.rows], indent=1)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([json.dumps(v) if isinstance(v, (list, dict)) else v for v in row] for row in self.rows)
        return out.getvalue().removesuffix("\n")

    def to_table(self) -> str:
        """Aligned text columns, numbers to the right."""
        cells = [[_cell(v) for v in row] for row in self.rows]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(self.columns)]
        numeric = [
            all(isinstance(row[i], (int, float)) for row in self.rows) and bool(self.rows)
            for i in range(len(self.columns))
        ]

        def line(values: list[str]) -> str:
            return "  ".join(
                v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
            ).rstrip()

        return "\n".join([line(self.columns), line(["-" * w for w in widths])] + [line(row) for row in cells])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
