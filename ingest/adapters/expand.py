"""Gateway-format input -> v1 items for the write path, shared by the HTTP collector
(`?format=NAME`) and file import (`--format NAME`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TooManyRecords(ValueError):
    """A request expanded into more records than allowed."""


Expanded = tuple[list[Any], list[tuple[int, int | None]], int, Callable[[dict], dict] | None]


def expand_records(docs: list[Any], adapter: Any, max_items: int | None = None) -> Expanded:
    """Split each document (array item / NDJSON line / file line) into the gateway's records
    and map them here. Mapped events go to the write path as they are; records that are not
    tool calls (SkipRecord) are counted, not quarantined; records that cannot be mapped go
    with the adapter as mapper, so the write path quarantines them with the reason.
    Returns (items, (document index, record index) per item, skipped, mapper)."""
    import orjson

    from ingest.adapters import SkipRecord

    items: list[Any] = []
    origin: list[tuple[int, int | None]] = []
    skipped = 0
    unmappable = False
    mapped: set[int] = set()
    for i, doc in enumerate(docs):
        if isinstance(doc, bytes | bytearray | memoryview | str):
            try:
                doc = orjson.loads(doc)
            except orjson.JSONDecodeError:
                items.append(doc)  # rejected as invalid JSON by the write path
                origin.append((i, None))
                continue
        try:
            records = list(adapter.records(doc))
        except ValueError:
            items.append(doc if isinstance(doc, dict) else orjson.dumps(doc))
            origin.append((i, None))
            unmappable = True
            continue
        multi = len(records) > 1
        for k, rec in enumerate(records):
            try:
                ev = adapter.map(rec)
                items.append(ev)
                mapped.add(id(ev))
            except SkipRecord:
                skipped += 1
                continue
            except (ValueError, KeyError, TypeError):
                items.append(rec)
                unmappable = True
            origin.append((i, k if multi else None))
            if max_items is not None and len(items) > max_items:
                raise TooManyRecords(f"more than {max_items} events in one request")
    mapper = _remap(adapter, mapped) if unmappable else None
    return items, origin, skipped, mapper


def _remap(adapter: Any, mapped: set[int]) -> Callable[[dict], dict]:
    """Mapper for a batch that holds both mapped events and unmappable records: the events
    mapped already (known by identity) pass through, the others are mapped again and fail
    again, so the write path quarantines them with the adapter's reason."""

    def mapper(obj: dict) -> dict:
        return obj if id(obj) in mapped else adapter.map(obj)

    return mapper
