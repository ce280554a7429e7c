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

from . import grib_decode, opendata, regrid, safe_pickle
from .checkpoint_info import CheckpointInfo, FieldSpec
from .errors import InputStateError, OpenDataError
from .naming import opendata_object

log = logging.getLogger(__name__)
GRAVITY = 9.80665  # m s-2, WMO standard: geopotential = g * geopotential height


def input_dates(cycle_time: dt.datetime, timestep_hours: int = 6) -> list[dt.datetime]:
    return [cycle_time - dt.timedelta(hours=timestep_hours), cycle_time]


def _source_key(spec: FieldSpec, number: int, available: set[tuple[str, str, int | None]]
                ) -> tuple[opendata.Key, float]:
    """Open data publishes geopotential height (gh) on pressure levels; models want z."""
    key = (spec.param, spec.levtype, spec.levelist)
    if key not in available and spec.param == "z" and spec.levtype == "pl":
        gh = ("gh", "pl", spec.levelist)
        if gh in available:
            return (*gh, number), GRAVITY
    return (*key, number), 1.0


def build(info: CheckpointInfo, cycle_time: dt.datetime, number: int, root: str,
          model: str = "ifs", resol: str = "0p25", stream: str = "enfo") -> dict[str, Any]:
    """The input state of one member from open data (step 0 of the runs at both dates)."""
    dates = input_dates(cycle_time, info.timestep_hours)
    fields: dict[str, NDArray[np.float32]] = {
        s.name: np.empty((len(dates), info.npoints), dtype=np.float32) for s in info.input_fields
    }
    for i, date in enumerate(dates):
        url = opendata_object(root, date, 0, model, resol, stream)
        started = time.perf_counter()
        index = opendata.load_index(url)
        available = {(m.param, m.levtype, m.levelist) for m in index if m.number == number}
        keys = {s.name: _source_key(s, number, available) for s in info.input_fields}
        try:
            chosen = opendata.select(index, [k for k, _ in keys.values()])
        except OpenDataError as exc:
            raise OpenDataError(f"{url} for member {number}: {exc}") from None
        wanted = [chosen[keys[s.name][0]] for s in info.input_fields]
        blobs = opendata.fetch(wanted)
        for spec, msg, blob in zip(info.input_fields, wanted, blobs, strict=True):
            on_grid = regrid.regrid_message(blob, info.grid)
            values = grib_decode.decode(on_grid, msg.label()) * keys[spec.name][1]
            if values.size != info.npoints:
                raise InputStateError(f"{msg.label()}: {values.size} points after regrid to "
                                      f"{info.grid}, checkpoint wants {info.npoints}")
            fields[spec.name][i] = values
        log.info("%s: %d fields for member %d in %.1fs (%.1f MB by range)", date.isoformat(),
                 len(wanted), number, time.perf_counter() - started,
                 sum(m.length for m in wanted) / 1e6)
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
