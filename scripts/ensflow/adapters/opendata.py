"""ECMWF open data: read `.index` files and pick the messages a stage needs.

The index already gives offset and length of every message, so no reference files are
built: a selection is a list of byte ranges in one object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ensflow.errors import IndexNotPublishedError, ObjectNotFoundError, OpenDataError
from ensflow.layout import index_of, opendata_object

if TYPE_CHECKING:
    import datetime as dt

    from ensflow.adapters.opendata_catalogue import Product
    from ensflow.adapters.storage import Storage
    from ensflow.config import OpenDataSettings


@dataclass(frozen=True)
class OpenDataLayout:
    """Where a mirror or ECMWF's bucket keeps its objects (the config's `opendata` keys)."""

    root: str
    model: str = "ifs"
    resol: str = "0p25"

    def url(self, base: dt.datetime, step: int, product: Product) -> str:
        return opendata_object(self.root, base, step, self.model, self.resol, product.stream,
                               product.file_type)

    @classmethod
    def from_settings(cls, od: OpenDataSettings) -> OpenDataLayout:
        return cls(od.root, od.model, od.resol)


@dataclass(frozen=True)
class Message:
    """One GRIB message in an open-data object."""

    url: str
    offset: int
    length: int
    param: str
    levtype: str
    levelist: int | None
    number: int
    step: str

    def label(self) -> str:
        level = f"/{self.levelist}" if self.levelist is not None else ""
        return f"{self.param}{level} member {self.number} step {self.step} ({self.url})"


def parse_index(text: str, grib_url: str) -> list[Message]:
    """Parse ECMWF's JSON-lines index; the control member (type cf) is member 0."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e: dict[str, Any] = json.loads(line)
            level = e.get("levelist")
            out.append(Message(
                url=grib_url,
                offset=int(e["_offset"]),
                length=int(e["_length"]),
                param=str(e["param"]),
                levtype=str(e.get("levtype", "sfc")),
                levelist=int(level) if level not in (None, "") else None,
                number=0 if e.get("type") == "cf" else int(e.get("number", 0)),
                step=str(e.get("step", "0")),
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise OpenDataError(f"{index_of(grib_url)} line {lineno}: bad index entry ({exc})") \
                from None
    return out


def load_index(storage: Storage, grib_url: str) -> list[Message]:
    url = index_of(grib_url)
    try:
        text = storage.read_bytes(url).decode()
    except ObjectNotFoundError as exc:
        raise IndexNotPublishedError(f"{url}: cannot read the index ({exc})") from None
    except Exception as exc:
        raise OpenDataError(f"{url}: cannot read the index ({exc})") from None
    return parse_index(text, grib_url)


Key = tuple[str, str, int | None, int]  # param, levtype, levelist, member


def select(messages: Iterable[Message], wanted: Iterable[Key]) -> dict[Key, Message]:
    """The message for each wanted key; one error listing everything that is missing."""
    by_key = {(m.param, m.levtype, m.levelist, m.number): m for m in messages}
    wanted = list(wanted)
    missing = [k for k in wanted if k not in by_key]
    if missing:
        shown = ", ".join(
            f"{p}{'/' + str(lv) if lv is not None else ''} ({lt}) member {n}"
            for p, lt, lv, n in missing[:20]
        )
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise OpenDataError(f"missing from the index: {shown}{more}")
    return {k: by_key[k] for k in wanted}


def fetch(storage: Storage, messages: list[Message]) -> list[bytes]:
    """Bytes of messages from one object, fetched as byte ranges."""
    urls = {m.url for m in messages}
    if len(urls) != 1:
        raise ValueError("fetch() takes messages of one object")
    return storage.read_ranges(urls.pop(), [(m.offset, m.length) for m in messages])
