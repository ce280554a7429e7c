"""Per-member input states: today's pickle format, `dict(date, fields)` with (2, npoints) arrays.

Built from open data at the two input dates (cycle - 6 h and cycle), regridded to the
checkpoint's grid; checked field by field so a bad member names itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ensflow.adapters import grib_decode, opendata, opendata_requests, regrid, safe_pickle
from ensflow.adapters.checkpoint_info import CheckpointInfo
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.opendata_catalogue import Catalogue
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.adapters.opendata_requests import FieldRequest
from ensflow.adapters.storage import Storage
from ensflow.errors import InputStateError, OpenDataError

log = logging.getLogger(__name__)


def input_dates(cycle_time: dt.datetime, timestep_hours: int = 6) -> list[dt.datetime]:
    return [cycle_time - dt.timedelta(hours=timestep_hours), cycle_time]


def check_source(request: FieldRequest, msg: opendata.Message, blob: bytes,
                 values: NDArray[np.float64], catalogue: Catalogue) -> None:
    """The message is the field its index line promised, with values that field can have.

    A swapped `_offset` in an index would otherwise give a forecast whose 2t holds msl.
    """
    got = grib_decode.field_keys(blob)
    want = (request.field.param, request.field.levtype, request.field.levelist,
            request.product.index_number)
    if got != want:
        shown = "{}/{} ({}) member {}"
        raise InputStateError(f"{msg.label()}: the message is {shown.format(*got)}, its index "
                              f"entry promised {shown.format(*want)} ({request.describe()})")
    bounds = catalogue.plausible_range(request.field.param)
    if bounds is not None:
        lo, hi = bounds
        vmin, vmax = float(np.nanmin(values)), float(np.nanmax(values))
        if vmin < lo or vmax > hi:
            raise InputStateError(f"{msg.label()}: values {vmin:.4g}..{vmax:.4g} outside the "
                                  f"plausible {lo:g}..{hi:g} for {request.field.param}")


def build(storage: Storage, info: CheckpointInfo, cycle_time: dt.datetime, number: int,
          layout: OpenDataLayout) -> dict[str, Any]:
    """The input state of one member from open data at both input dates.

    Each variable comes from where ECMWF publishes it (opendata_requests): the member's
    fields from enfo, the constants from the HRES stream; one index read and one batch of
    byte ranges per object.
    """
    catalogue = load_catalogue()
    dates = input_dates(cycle_time, info.timestep_hours)
    fields: dict[str, NDArray[np.float32]] = {
        s.name: np.empty((len(dates), info.npoints), dtype=np.float32) for s in info.input_fields
    }
    regridder = regrid.WeightsRegridder(info.grid)
    for i, date in enumerate(dates):
        started = time.perf_counter()
        by_url: dict[str, list[FieldRequest]] = {}
        for r in opendata_requests.for_member(info, date, number, catalogue):
            by_url.setdefault(r.url(layout), []).append(r)
        nbytes = 0
        for url, requests in by_url.items():
            index = opendata.load_index(storage, url)
            listed = {(m.param, m.levtype, m.levelist, m.number) for m in index}
            missing = [r.describe() for r in requests if r.key not in listed]
            if missing:
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise OpenDataError(f"{url} for member {number}: not in the index: "
                                    f"{'; '.join(missing[:10])}{more}")
            chosen = opendata.select(index, [r.key for r in requests])
            wanted = [chosen[r.key] for r in requests]
            for r, msg, blob in zip(requests, wanted, opendata.fetch(storage, wanted), strict=True):
                values = regridder.values(blob, msg.label())
                check_source(r, msg, blob, values, catalogue)
                if values.size != info.npoints:
                    raise InputStateError(f"{msg.label()}: {values.size} points after regrid to "
                                          f"{info.grid}, checkpoint wants {info.npoints}")
                fields[r.variable][i] = values * r.scale
            nbytes += sum(m.length for m in wanted)
        log.info("%s: %d fields for member %d from %s in %.1fs (%.1f MB by range)",
                 date.isoformat(), len(info.input_fields), number,
                 ", ".join(u.rsplit("/", 1)[-1] for u in by_url), time.perf_counter() - started,
                 nbytes / 1e6)
    state = {"date": cycle_time, "fields": fields}
    check(state, info, f"member {number}")
    return state


def check(state: Any, info: CheckpointInfo, what: str) -> None:
    """Present, finite, right size: the problem is named with the member and field."""
    if not isinstance(state, dict) or "fields" not in state or "date" not in state:
        raise InputStateError(f"{what}: input state must be a dict with 'date' and 'fields'")
    if not isinstance(state["date"], dt.datetime):
        raise InputStateError(f"{what}: 'date' is {type(state['date']).__name__}, not datetime")
    fields = state["fields"]
    if not isinstance(fields, dict):
        raise InputStateError(f"{what}: 'fields' is {type(fields).__name__}, not a dict")
    missing = [s.name for s in info.input_fields if s.name not in fields]
    if missing:
        raise InputStateError(f"{what}: missing field(s) {', '.join(missing)}")
    for spec in info.input_fields:
        a = fields[spec.name]
        if not isinstance(a, np.ndarray):
            raise InputStateError(f"{what}: field {spec.name} is {type(a).__name__}, not an array")
        if a.ndim != 2 or a.shape[1] != info.npoints or a.shape[0] < 1:
            raise InputStateError(f"{what}: field {spec.name} has shape {a.shape}, expected "
                                  f"(2, {info.npoints})")
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise InputStateError(f"{what}: field {spec.name} has {bad} non-finite values")


def load(path: str, info: CheckpointInfo, what: str) -> dict[str, Any]:
    """Load a pickle through the allow-list and check it against the checkpoint."""
    state = safe_pickle.load(path, what)
    check(state, info, what)
    return state
