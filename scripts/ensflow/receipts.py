"""Receipts: small local files that stand for remote effects (an object in a bucket).

A receipt exists only once its objects are safely stored, so Snakemake's file targets
make resumption work for remote outputs too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any


def write(path: str | Path, record: dict[str, Any]) -> None:
    """Write JSON under a temporary name, then rename: a receipt is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **record}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def read_if_any(path: str | Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing, unreadable, partial or not an object."""
    try:
        value = read(path)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def objects(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The bucket objects a receipt stands for: an upload receipt lists them ("objects"),
    an input receipt names one ("object", "size")."""
    listed = record.get("objects")
    if isinstance(listed, list) and listed:
        return listed
    if record.get("object"):
        return [{"url": record["object"], "size": record.get("bytes", record.get("size")),
                 "skipped": record.get("skipped", False)}]
    return []
