"""The AI Weather Quest's weekly quintile climatology: one file per variable and valid date.

The quest serves `{var}_20yrCLIM_WEEKLY{MEAN|SUM}_quintiles_{YYYYMMDD}.nc` under
`/climatologies/{YYYY}/` for the first day of each forecast week (issue + 18 d, + 25 d);
AI_WQ_package's `retrieve_20yr_quantile_clim` downloads it and opens it as a DataArray
(quantile 0.2…0.8, latitude, longitude; `lat`/`lon` renamed). A stale file, another grid,
another latitude order or other units would give wrong probabilities silently, so each
file is checked before any probability is computed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensflow import layout
from ensflow.errors import EnsflowError
from ensflow.layout import join_url
from ensflow.science import quest

if TYPE_CHECKING:
    from ensflow.adapters.storage import Storage

log = logging.getLogger(__name__)

AIWQ = "aiwq"  # the config value that means: the quest's own server, through AI_WQ_package
AGGREGATION = {"tas": "WEEKLYMEAN", "mslp": "WEEKLYMEAN", "pr": "WEEKLYSUM"}
QUANTILES = np.array([0.2, 0.4, 0.6, 0.8])
# Spellings of the units a file may carry, per unit the config names.
UNIT_SPELLINGS = {"K": {"K", "kelvin"}, "degC": {"degC", "C", "celsius"}, "Pa": {"Pa"},
                  "hPa": {"hPa", "mbar"}, "mm": {"mm", "mm/week", "mm week-1", "mm week**-1"},
                  "m": {"m"}}
# Where thresholds of each unit lie, to tell units apart when a file does not say them.
UNIT_RANGES = {"K": (180.0, 340.0), "degC": (-95.0, 70.0), "Pa": (85_000.0, 110_000.0),
               "hPa": (850.0, 1100.0), "mm": (0.0, 2000.0), "m": (0.0, 2.0)}


class ClimatologyError(EnsflowError):
    """A climatology file is missing, stale, on another grid or in other units."""


def filename(var: str, valid: dt.date) -> str:
    """The quest's name for a variable's climatology for the week starting `valid`."""
    return layout.climatology_name(var, AGGREGATION[var], valid)


def remote_path(var: str, valid: dt.date) -> str:
    return layout.climatology_remote_path(filename(var, valid), valid)


def week_start(issue: dt.datetime, period: int) -> dt.date:
    return quest.valid_dates(issue, period)[0].date()


def needed(issue: dt.datetime, variables: list[str]) -> list[tuple[str, int, dt.date]]:
    """(variable, period, valid date) of every file a cycle's products need."""
    return [(v, p, week_start(issue, p)) for v in variables for p in quest.PERIODS]


def source_url(source: str, var: str, valid: dt.date) -> str:
    return join_url(source, remote_path(var, valid))


def fetch(storage: Storage, source: str, var: str, valid: dt.date, dest: str | Path,
          password_env: str) -> None:
    """Bring one file to `dest`: from the quest's server, or from a mirror of its layout."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source != AIWQ:
        storage.get_file(source_url(source, var, valid), dest)
        return
    password = os.environ.get(password_env)
    if not password:
        raise ClimatologyError(f"climatology from the quest's server needs the password in "
                               f"${password_env} (not set)")
    try:
        from AI_WQ_package import retrieve_evaluation_data
    except ImportError as exc:
        raise ClimatologyError(f"climatology from the quest's server: AI_WQ_package cannot load "
                               f"its download client ({exc}); mirror the files and set "
                               "quest.climatology to their URL prefix") from None
    tmp = dest.parent / f".{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        retrieve_evaluation_data.retrieve_20yr_quantile_clim(f"{valid:%Y%m%d}", var, password,
                                                             local_destination=str(tmp))
        os.replace(tmp / filename(var, valid), dest)
    finally:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _data_array(path: Path, var: str) -> Any:
    import xarray as xr

    ds = xr.open_dataset(path)
    names = list(ds.data_vars)
    if var in names:
        da = ds[var]
    elif len(names) == 1:
        da = ds[names[0]]
    else:
        raise ClimatologyError(f"{path.name}: {len(names)} variables {names}, none named {var}")
    da = da.squeeze()
    return da.rename({k: v for k, v in {"lat": "latitude", "lon": "longitude"}.items()
                      if k in da.dims})


def _check_units(path: Path, da: Any, want: str) -> str:
    given = da.attrs.get("units")
    if given is not None:
        if str(given) not in UNIT_SPELLINGS.get(want, {want}):
            raise ClimatologyError(f"{path.name}: units {given!r}, config "
                                   f"quest.climatology_units says {want!r}")
        return f"{given} (file)"
    lo, hi = UNIT_RANGES[want]
    vmin, vmax = float(np.nanmin(da.values)), float(np.nanmax(da.values))
    if vmin < lo or vmax > hi or (want == "mm" and vmax < 2.0):
        raise ClimatologyError(f"{path.name}: no units attribute and thresholds {vmin:.4g}…"
                               f"{vmax:.4g} are not in {want} (expected {lo:g}…{hi:g})")
    return f"{want} (from the range; the file names none)"


def fetch_checked(storage: Storage, source: str, var: str, valid: dt.date, dest: str | Path,
                  password_env: str, units: str) -> dict[str, Any]:
    """`fetch`, then `load_checked`: a file that fails its checks is not left at `dest`."""
    dest = Path(dest)
    fetch(storage, source, var, valid, dest, password_env)
    try:
        return load_checked(dest, var, valid, units)[1]
    except EnsflowError:
        dest.unlink(missing_ok=True)
        raise


def load_checked(path: str | Path, var: str, valid: dt.date, units: str
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Thresholds (4, 121, 240) on the quest grid (latitude 90 → −90, longitude 0 → 358.5),
    after checking valid date, grid, quantiles, units and values; a file in another
    latitude or longitude order is reordered by its coordinates, never by position."""
    path = Path(path)
    if path.name != filename(var, valid):
        raise ClimatologyError(f"{path.name}: expected {filename(var, valid)} for {var} in the "
                               f"week starting {valid:%Y-%m-%d}")
    da = _data_array(path, var)
    for name in ("time", "valid_time", "date"):
        if name in da.coords and da.coords[name].size == 1:
            stamp = np.datetime64(da.coords[name].values.ravel()[0], "D")
            if stamp != np.datetime64(valid, "D"):
                raise ClimatologyError(f"{path.name}: holds the week of {stamp}, the forecast "
                                       f"week starts {valid:%Y-%m-%d} (stale file?)")
    qdim = next((d for d in ("quantile", "quintile") if d in da.dims), None)
    if qdim is None or set(da.dims) != {qdim, "latitude", "longitude"}:
        raise ClimatologyError(f"{path.name}: dims {da.dims}, expected (quantile, latitude, longitude)")
    if not np.allclose(np.sort(da[qdim].values), QUANTILES):
        raise ClimatologyError(f"{path.name}: quantiles {da[qdim].values.tolist()}, expected "
                               f"{QUANTILES.tolist()}")
    lats, lons = da["latitude"].values, da["longitude"].values % 360.0
    if (lats.size, lons.size) != (quest.NLAT, quest.NLON) or not (
            np.allclose(np.sort(lats), np.sort(quest.LATITUDES))
            and np.allclose(np.sort(lons), quest.LONGITUDES)):
        raise ClimatologyError(
            f"{path.name}: grid {lats.size} x {lons.size} (latitude {lats[0]:g}…{lats[-1]:g}, "
            f"longitude {lons[0]:g}…{lons[-1]:g}) is not the quest's 1.5° grid 121 x 240")
    reordered = bool(lats[0] < lats[-1] or np.any(np.diff(lons) < 0))
    da = (da.assign_coords(longitude=lons).sortby(qdim).sortby("latitude", ascending=False)
          .sortby("longitude").transpose(qdim, "latitude", "longitude"))
    unit_note = _check_units(path, da, units)
    values = np.asarray(da.values, dtype=np.float64)
    bad = int(np.isnan(values).sum())
    if bad:
        raise ClimatologyError(f"{path.name}: {bad} NaN thresholds (a submission must be "
                               "finite everywhere)")
    if np.any(np.diff(values, axis=0) < 0):
        raise ClimatologyError(f"{path.name}: thresholds are not ascending over the quantiles")
    return values, {"file": path.name, "valid_date": f"{valid:%Y-%m-%d}", "units": unit_note,
                    "reordered": reordered}


def write_synthetic(path: str | Path, var: str, valid: dt.date, thresholds: np.ndarray,
                    units: str) -> None:
    """A demo file in the quest's form: one DataArray named after the variable, dims
    (time, quantile, latitude, longitude) with one time, the week's first day."""
    import xarray as xr

    da = xr.DataArray(
        thresholds[None].astype(np.float32), name=var,
        dims=("time", "quantile", "latitude", "longitude"),
        coords={"time": [np.datetime64(valid, "ns")], "quantile": QUANTILES,
                "latitude": quest.LATITUDES, "longitude": quest.LONGITUDES},
        attrs={"units": units, "synthetic": 1,
               "title": "synthetic weekly quintile thresholds (ensflow demo only)"})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    da.to_netcdf(tmp)
    os.replace(tmp, path)
