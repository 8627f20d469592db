"""Avro records framed with single-object encoding: ``C3 01`` + CRC-64-AVRO fingerprint + body.

The fingerprint names the writer schema, so a reader can resolve records written with an older or
newer version of its schema, and reject bytes written with a schema it does not know. A decoded
record's event_id and top-level times are checked too (:mod:`loopline.codec.checks`).

Timestamps stay plain integers (epoch milliseconds) in loopline's records: the codec reads and
writes ``timestamp-millis`` fields as longs. The logical type is still declared in the schema
files for other readers; it does not change the fingerprint (the canonical form drops it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from loopline.codec.checks import check_id, check_time
from loopline.codec.errors import CodecError
from loopline.paths import SCHEMAS_DIR

__all__ = ["MAGIC", "Codec", "load_schema", "schema_names"]

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

Schema = dict[str, Any]


def load_schema(name: str) -> Schema:
    """Read ``schemas/<name>.avsc`` (e.g. ``features``) as a JSON dict."""
    path = SCHEMAS_DIR / f"{name}.avsc"
    schema: Schema = json.loads(path.read_text())
    return schema


def schema_names() -> list[str]:
    """Names of every schema in ``schemas/``."""
    return sorted(p.stem for p in SCHEMAS_DIR.glob("*.avsc"))


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


def _parse(schema: Schema) -> Schema:
    parsed = fastavro.parse_schema(_without_logical_types(schema))
    assert isinstance(parsed, dict)
    return parsed


def header_of(parsed: Schema) -> bytes:
    """The 10-byte single-object header of a parsed schema."""
    canonical = to_parsing_canonical_form(parsed)
    return MAGIC + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class Codec:
    """Encode and decode records of one reader schema.

    Args:
        schema: the reader (and writer) schema, as a JSON dict.
        writers: other schema versions whose records this codec must read.
    """

    def __init__(self, schema: Schema, writers: Iterable[Schema] = ()) -> None:
        self.schema = _parse(schema)
        self.header = header_of(self.schema)
        fields = schema.get("fields", [])
        self._has_id = any(f["name"] == "event_id" and f["type"] == "string" for f in fields)
        self._times = [f["name"] for f in fields if _is_timestamp(f["type"])]
        self._writers: dict[bytes, Schema] = {self.header: self.schema}
        for writer in writers:
            self.add_writer(writer)

    @classmethod
    def load(cls, name: str) -> Codec:
        """A codec for ``schemas/<name>.avsc`` that also reads records written with its earlier versions
        (``schemas/previous/<name>.<n>.avsc``)."""
        earlier = sorted((SCHEMAS_DIR / "previous").glob(f"{name}.*.avsc"))
        return cls(load_schema(name), writers=[json.loads(path.read_text()) for path in earlier])

    def add_writer(self, schema: Schema) -> None:
        """Accept records written with ``schema`` (resolved to this codec's schema on read)."""
        parsed = _parse(schema)
        self._writers[header_of(parsed)] = parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        """Frame one record.

        Raises:
            CodecError: the record does not match the schema (reason ``invalid-record``).
        """
        out = io.BytesIO()
        out.write(self.header)
        try:
            fastavro.schemaless_writer(out, self.schema, record)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CodecError("invalid-record", f"{self.schema['name']}: {exc!r}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one framed record into a dict of this codec's schema.

        Raises:
            CodecError: the bytes are not a framed record (``corrupt``), name a writer schema this
                codec does not know (``unknown-schema``), their body does not parse (``corrupt``),
                the event_id is empty or overlong (``invalid-id``), or a top-level timestamp is
                outside the years 1900-2299 (``invalid-time``).
        """
        if data[:2] != MAGIC:
            raise CodecError("corrupt", "not an Avro single-object record (bad marker)")
        if len(data) < HEADER_SIZE:
            raise CodecError("corrupt", f"{len(data)} bytes, shorter than the single-object header")
        writer = self._writers.get(bytes(data[:HEADER_SIZE]))
        if writer is None:
            raise CodecError(
                "unknown-schema",
                f"writer schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()} is unknown "
                f"to the {self.schema['name']} codec",
            )
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(body, writer, self.schema)
        except Exception as exc:  # fastavro raises many types on garbage
            raise CodecError("corrupt", f"{self.schema['name']} body does not parse: {exc!r}") from exc
        if body.tell() != len(data):
            raise CodecError("corrupt", f"{len(data) - body.tell()} trailing bytes after the record")
        assert isinstance(record, dict)
        if self._has_id:
            check_id(record["event_id"])
        for name in self._times:
            check_time(name, record[name])
        return record


def _is_timestamp(field_type: Any) -> bool:
    return isinstance(field_type, dict) and field_type.get("logicalType") == "timestamp-millis"
