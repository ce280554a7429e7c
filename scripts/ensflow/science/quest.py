"""AI Weather Quest products: 1.5° member fields, weekly windows, quintile probabilities.

Week windows, units and regrid methods are where today's scripts went wrong, so each is
computed in one place here and checked by tests:
- period 1 = days 19–25 from the issue date: tas/mslp are means of the 6-hourly values at
  +432 … +594 h, pr is the accumulation at +600 h minus that at +432 h;
- period 2 = days 26–32: +600 … +762 h, pr over +600 … +768 h;
- precipitation is regridded with a conservative method and clipped at 0, and converted
  from the model's metres to the climatology's millimetres.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensflow.adapters import grib_decode
from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.regrid import regrid_message, weights_for
from ensflow.cycle import cycle_datetime
from ensflow.errors import EnsflowError
from ensflow.provenance import code_version, record

if TYPE_CHECKING:
    from ensflow.config import Settings

log = logging.getLogger(__name__)

QUEST_GRID = "1.5/1.5"
NLAT, NLON = 121, 240
LATITUDES = np.linspace(90.0, -90.0, NLAT)
LONGITUDES = np.arange(NLON) * 1.5
QUINTILES = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
PERIODS = (1, 2)


def products(variables: list[str]) -> list[tuple[str, int]]:
    """(variable, period) of every submission, in the order rules list their files."""
    return [(v, p) for v in variables for p in PERIODS]


@dataclass(frozen=True)
class QuestVar:
    """A submission variable and the model field behind it."""

    name: str  # tas, mslp, pr
    param: str  # 2t, msl, tp
    short_name: str  # the DataArray name in submission files
    accumulated: bool
    model_units: str
    cell_methods: str
    standard_name: str


VARIABLES: dict[str, QuestVar] = {
    "tas": QuestVar("tas", "2t", "t2m", False, "K", "time: mean (interval: 6 hours)",
                    "2 metre temperature probability"),
    "mslp": QuestVar("mslp", "msl", "mslp", False, "Pa", "time: mean (interval: 6 hours)",
                     "Mean sea level pressure probability"),
    "pr": QuestVar("pr", "tp", "tp", True, "m", "time: sum (interval: 24 hours)",
                   "Total precipitation probability"),
}
UNIT_FACTORS = {("K", "K"): 1.0, ("Pa", "Pa"): 1.0, ("Pa", "hPa"): 0.01, ("m", "mm"): 1000.0,
                ("m", "m"): 1.0, ("K", "degC"): 1.0}
UNIT_OFFSETS = {("K", "degC"): -273.15}
VALID_RANGES = {"tas": (180.0, 340.0), "mslp": (85_000.0, 110_000.0), "pr": (0.0, 2_000.0)}


# ------------------------------------------------------------------ windows


def window_hours(var: QuestVar, period: int) -> list[int]:
    """Lead hours used for one variable and period (6-hourly instants, or accumulation ends)."""
    if period not in PERIODS:
        raise ValueError(f"period {period}: the quest has periods 1 and 2")
    start = 432 if period == 1 else 600
    if var.accumulated:
        return [start, start + 168]
    return list(range(start, start + 168, 6))


def needed_steps(variables: list[QuestVar]) -> list[int]:
    return sorted({h for v in variables for p in PERIODS for h in window_hours(v, p)})


def valid_dates(issue: dt.datetime, period: int) -> tuple[dt.datetime, dt.datetime]:
    """First and last day of the period (issue + 18 d … + 24 d for period 1)."""
    first = issue + dt.timedelta(days=18 if period == 1 else 25)
    return first, first + dt.timedelta(days=6)


def weekly(values: np.ndarray, steps: list[int], var: QuestVar, period: int) -> np.ndarray:
    """(members, steps, lat, lon) → (members, lat, lon): mean of instants or accumulation difference."""
    hours = window_hours(var, period)
    idx = [steps.index(h) for h in hours]
    if var.accumulated:
        total = values[:, idx[1]] - values[:, idx[0]]
        return np.maximum(total, 0.0)
    return values[:, idx].mean(axis=1)


def convert_units(values: np.ndarray, var: QuestVar, to_units: str) -> np.ndarray:
    key = (var.model_units, to_units)
    if key not in UNIT_FACTORS:
        raise EnsflowError(f"{var.name}: cannot convert model units {var.model_units} to "
                           f"climatology units {to_units}")
    return values * UNIT_FACTORS[key] + UNIT_OFFSETS.get(key, 0.0)


# ------------------------------------------------------------------ probabilities


def quintile_probabilities(members: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of members in each climatological quintile interval per grid point.

    members: (n, lat, lon); thresholds: (4, lat, lon), ascending (the 20/40/60/80 % values).
    As the quest's scorer (AI_WQ_package forecast_evaluation.conditional_obs_probs) places
    an observation: below the first edge is q1, `lower <= x < upper` a middle quintile,
    `x >= last edge` q5, so a value equal to an edge goes UP (weekly rain of 0 mm against
    0 mm edges in a desert is in the highest zero-width quintile's upper neighbour, as
    there). A NaN member counts in no quintile and not in the ensemble size; a point with
    no finite member is NaN. Returns (5, lat, lon).
    """
    if np.any(np.diff(thresholds, axis=0) < 0):
        raise EnsflowError("climatology thresholds are not ascending")
    finite = np.isfinite(members)
    category = (members[:, None] >= thresholds[None]).sum(axis=1)  # 0..4 per member
    counts = np.stack([((category == q) & finite).sum(axis=0) for q in range(5)])
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, counts / np.maximum(n, 1), np.nan)


def check_issue_date(cycle: str, allow_any: bool) -> None:
    """The quest takes forecasts issued on Thursdays at 00 UTC (AI_WQ_package
    check_fc_submission.check_forecast_data_window refuses other weekdays)."""
    issue = cycle_datetime(cycle)
    if allow_any or (issue.weekday() == 3 and issue.hour == 0):
        return
    raise EnsflowError(f"cycle {cycle}: issue {issue:%Y-%m-%d %H} UTC is a {issue:%A}: AI Weather Quest "
                       "submissions are issued on Thursdays at 00 UTC (run a Thursday 00 UTC "
                       "cycle, set quest.enabled: false, or quest.allow_any_issue_date: true "
                       "for experiments)")


# ------------------------------------------------------------------ regrid


def method_for(var: QuestVar, methods: dict[str, str]) -> str:
    return methods.get(var.name, "grid-box-average" if var.accumulated else "linear")


def regrid_to_quest(message: bytes, var: QuestVar, methods: dict[str, str]) -> np.ndarray:
    """One GRIB message to the quest grid (121 × 240, 90 → −90, 0 → 358.5), mir per field."""
    out = regrid_message(message, QUEST_GRID, method_for(var, methods))
    values = grib_decode.decode(out, f"{var.name} on the quest grid").reshape(NLAT, NLON)
    if var.accumulated:
        np.maximum(values, 0.0, out=values)
    return values.astype(np.float32)


class QuestRegridder:
    """Fields to the quest grid with mir's own weights as one sparse product per field.

    The weights come from mir (see regrid.weights_for); if they cannot be read and
    checked, each field goes through mir as a GRIB message instead.
    """

    def __init__(self, methods: dict[str, str]) -> None:
        self.methods = methods
        self._weights: dict[tuple[str, int], Any] = {}

    def weights(self, var: QuestVar, sample: bytes, npoints: int) -> Any:
        key = (method_for(var, self.methods), npoints)
        if key not in self._weights:
            self._weights[key] = weights_for(sample, QUEST_GRID, key[0])
            log.info("%s: %s regrid %s", var.name, key[0],
                     "by mir's sparse weights" if self._weights[key] is not None else "by mir per field")
        return self._weights[key]

    def values(self, var: QuestVar, values: np.ndarray, message: Any) -> np.ndarray:
        """`message` is the field as GRIB (bytes, or a callable making them only when needed:
        to find mir's weights once, or for mir itself when there are none)."""
        key = (method_for(var, self.methods), values.size)
        if key in self._weights:
            matrix = self._weights[key]
        else:
            message = message() if callable(message) else message
            matrix = self.weights(var, message, values.size)
        if matrix is None:
            msg = message() if callable(message) else message
            return regrid_to_quest(msg, var, self.methods)
        out = (matrix @ np.asarray(values, dtype=np.float64)).reshape(NLAT, NLON)
        if var.accumulated:
            np.maximum(out, 0.0, out=out)
        return out.astype(np.float32)


class InForecastRegridder:
    """Collects quest fields from the states the runner yields, on the quest grid."""

    def __init__(self, variables: list[QuestVar], methods: dict[str, str]) -> None:
        self.variables = variables
        self.regridder = QuestRegridder(methods)
        self.steps = needed_steps(variables)
        self.fields = {v.name: np.full((len(self.steps), NLAT, NLON), np.nan, np.float32)
                       for v in variables}
        self.own_steps = {v.name: set(needed_steps([v])) for v in variables}

    def wants(self, step: int) -> bool:
        return step in self.steps

    def add(self, encoder: Any, specs: dict[str, FieldSpec], step: int,
            fields: dict[str, np.ndarray]) -> None:
        """Float fields straight from the model; a GRIB message only to fetch mir's weights."""
        for v in self.variables:
            if step not in self.own_steps[v.name]:
                continue  # e.g. precipitation is needed at the window ends only
            values = np.asarray(fields[v.param], dtype=np.float64)
            self.fields[v.name][self.steps.index(step)] = self.regridder.values(
                v, values, lambda v=v, values=values: encoder.encode(specs[v.param], step, values))

    def save(self, path: str | Path, cycle: str, member: int) -> None:
        save_member_fields(path, self.fields, self.steps, cycle, member, "forecast")


def from_grib_files(paths: list[str | Path], variables: list[QuestVar],
                    methods: dict[str, str]) -> dict[str, np.ndarray]:
    """Quest fields of one member from its GRIB files (cycles produced earlier)."""
    steps = needed_steps(variables)
    fields = {v.name: np.full((len(steps), NLAT, NLON), np.nan, np.float32) for v in variables}
    by_param = {v.param: v for v in variables}
    regridder = QuestRegridder(methods)
    for path in paths:
        for param, step, msg in grib_decode.file_messages(path):
            v = by_param.get(param)
            if v is not None and step in needed_steps([v]):
                values = grib_decode.decode(msg, f"{v.name} step {step} ({path})")
                fields[v.name][steps.index(step)] = regridder.values(v, values, msg)
    for v in variables:
        data = fields[v.name]
        own = needed_steps([v])
        missing = [s for s, block in zip(steps, data, strict=True)
                   if s in own and np.isnan(block).all()]
        name = v.name
        if missing:
            raise EnsflowError(f"{name}: steps {missing[:5]} not found in {len(paths)} GRIB files")
    return fields


def save_fields(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz whole or absent (written aside, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def save_member_fields(path: str | Path, fields: dict[str, np.ndarray], steps: list[int],
                       cycle: str, member: int, source: str) -> None:
    meta = json.dumps({"cycle": cycle, "member": member, "source": source})
    save_fields(path, {"steps": np.asarray(steps), **fields, "meta": np.asarray(meta)})


def load_member_fields(path: str | Path) -> tuple[dict[str, np.ndarray], list[int], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        steps = [int(s) for s in z["steps"]]
        fields = {k: z[k] for k in z.files if k not in {"steps", "meta"}}
    return fields, steps, meta


# ------------------------------------------------------------------ products


def submission_array(probs: np.ndarray, var: QuestVar, issue: dt.datetime, period: int,
                     attrs: dict[str, Any]) -> Any:
    import xarray as xr

    start_days = 18.0 if period == 1 else 25.0
    end_days = start_days + (7.0 if var.accumulated else 6.75)
    issue64 = np.datetime64(issue.strftime("%Y-%m-%dT%H:%M:%S"))
    da = xr.DataArray(
        probs.astype(np.float32), dims=["quintile", "latitude", "longitude"], name=var.short_name,
        coords={
            "quintile": ("quintile", QUINTILES),
            "latitude": ("latitude", LATITUDES, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", LONGITUDES, {"units": "degrees_east",
                                                    "standard_name": "longitude"}),
            "forecast_issue_date": issue64,
            "forecast_period_start": issue64 + np.timedelta64(int(start_days * 24), "h"),
            "forecast_period_end": issue64 + np.timedelta64(int(end_days * 24), "h"),
        },
        attrs={"standard_name": var.standard_name, "units": "1", "cell_methods": var.cell_methods,
               **attrs})
    return da


def offline_checks(da: Any, var: str, issue: dt.datetime, period: int) -> None:
    """The quest package's own offline checks (registration checks need its servers)."""
    from AI_WQ_package import check_fc_submission as chk

    chk.check_variable_in_list(var, ["tas", "mslp", "pr"])
    chk.is_valid_date(issue.strftime("%Y%m%d"))
    chk.check_variable_in_list(chk.convert_fc_period_to_string(period), ["1", "2"])
    da = chk.check_and_flip_latitudes(da)
    chk.check_and_convert_longitudes(da)
    chk.check_quintile_range(da)
    chk.check_data_characteristics(da, var, issue.strftime("%Y%m%d"), str(period))


def sanity(var: QuestVar, weekly_values: np.ndarray, probs: np.ndarray, n_members: int,
           expected_members: int, allow_partial: bool, tolerance: float = 0.1) -> dict[str, Any]:
    """What stops a bad submission, and what only goes in the report."""
    lo, hi = VALID_RANGES[var.name]
    vmin, vmax = float(np.nanmin(weekly_values)), float(np.nanmax(weekly_values))
    if vmin < lo or vmax > hi:
        raise EnsflowError(f"{var.name}: weekly values {vmin:.4g}…{vmax:.4g} outside the "
                           f"plausible range {lo:g}…{hi:g} (units?)")
    if n_members < expected_members and not allow_partial:
        raise EnsflowError(f"{var.name}: {n_members} of {expected_members} members")
    weights = np.cos(np.deg2rad(LATITUDES))[None, :, None] * np.ones_like(probs)
    balance = (probs * weights).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))
    return {"range": [vmin, vmax], "members": n_members,
            "quintile_balance": [round(float(b), 4) for b in balance],
            "balance_flag": bool(np.any(np.abs(balance - 0.2) > tolerance))}


def issue_date(cycle: str) -> dt.datetime:
    return cycle_datetime(cycle).replace(hour=0, minute=0)


def provenance_attrs(settings: Settings, extra: dict[str, Any]) -> dict[str, Any]:
    prov = record(settings, **extra)
    return {"ensflow_provenance": json.dumps(prov, default=str), "code_version": code_version(),
            "synthetic": int(bool(settings.synthetic))}


def write_netcdf(da: Any, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    da.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)
