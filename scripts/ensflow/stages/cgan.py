"""Stage: IFS-ENS inputs for the cGAN precipitation downscaling model (East Africa).

setup  → the byte ranges of the wanted messages, from ECMWF's `.index` files; the run
         branch of the store, grown for the cycle
batch  → range fetch, whole-message checks, gribberish decode in worker processes, region
         cut by index slices from the GRIB header, deaccumulation, a fork of the store
publish→ one atomic commit of the cycle (ensemble_store)
netcdf → ensemble mean and standard deviation, `IFS_YYYYMMDD_HHz_cgan.nc`
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from ensflow import receipts
from ensflow.adapters import ensemble_store, grib_decode, opendata
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.adapters.storage import Storage
from ensflow.config import Settings
from ensflow.cycle import HOURS_SINCE_1900, hours_since_1900
from ensflow.errors import OpenDataError
from ensflow.provenance import code_version, record
from ensflow.science import ensemble_moments
from ensflow.science.cgan_plan import (
    ACCUMULATION_TEXT,
    CGAN_0P1,
    UNITS,
    Plan,
    plan_from,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ index


def select_step(settings: Settings, step: int, out: str | Path) -> None:
    """The messages of one step that the cycle needs, per object; every missing one is listed."""
    plan = plan_from(settings)
    storage = Storage.from_settings(settings)
    catalogue = load_catalogue()
    objects = []
    for url, members in plan.objects(step).items():
        messages = opendata.load_index(storage, url)
        wanted = [(v, m) for v in plan.variables if step in plan.fetch_steps(v) for m in members]
        for v, m in wanted:
            catalogue.check(plan.base, plan.product(m), v.field, step)
        try:
            chosen = opendata.select(messages, [(v.param, v.levtype, v.levelist, m) for v, m in wanted])
        except OpenDataError as exc:
            raise OpenDataError(f"{url}: {exc}") from None
        entries = [
            {"var": v.name, "member": m, "offset": msg.offset, "length": msg.length}
            for (v, m), msg in zip(wanted, chosen.values(), strict=True)
        ]
        objects.append({"url": url, "messages": entries})
        log.info("step %d: %d of %d messages selected from %s (%.1f MB)", step, len(entries),
                 len(messages), url, sum(e["length"] for e in entries) / 1e6)
    receipts.write(out, {"step": step, "objects": objects})


# ------------------------------------------------------------------ decoding (worker processes)


def region_slices(lats: np.ndarray, lons: np.ndarray, region: dict[str, float]) -> tuple[slice, slice]:
    """Index slices of a regular grid inside the region; longitudes may start at 180."""
    lon180 = (np.asarray(lons) + 180.0) % 360.0 - 180.0
    tol = 1e-6
    rows = np.flatnonzero((lats >= region["lat_min"] - tol) & (lats <= region["lat_max"] + tol))
    cols = np.flatnonzero((lon180 >= region["lon_min"] - tol) & (lon180 <= region["lon_max"] + tol))
    if rows.size == 0 or cols.size == 0:
        raise OpenDataError(f"region {region} has no points on this grid")
    if np.any(np.diff(rows) != 1) or np.any(np.diff(cols) != 1):
        raise OpenDataError(f"region {region} is not contiguous on this grid (crosses the seam?)")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def region_coords(buf: bytes, region: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    lats, lons = grib_decode.regular_ll_axes(buf)
    rs, cs = region_slices(lats, lons, region)
    return lats[rs], (lons[cs] + 180.0) % 360.0 - 180.0


def decode_region(task: tuple[bytes, dict[str, float], int, str]) -> np.ndarray:
    """Decode one message and cut the region (runs in a worker: gribberish holds the GIL)."""
    buf, region, member, what = task
    grib_decode.check_message(buf, what)
    number = grib_decode.perturbation_number(buf)
    if number is not None and number != member:
        raise OpenDataError(f"{what}: message is member {number}, the index says {member}")
    lats, lons = grib_decode.regular_ll_axes(buf, what)
    rs, cs = region_slices(lats, lons, region)
    values = grib_decode.decode(buf, what).reshape(lats.size, lons.size)
    return values[rs, cs].astype(np.float32)


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


# ------------------------------------------------------------------ batch


Entry = tuple[str, int, int, int, int]  # var, member, step, offset, length
TASK_MESSAGES = 12  # messages per worker task: enough to coalesce ranges, small enough to balance
_WORKER_STORAGES: dict[Storage, Storage] = {}  # in a worker: equal settings, one set of clients


def fetch_decode(task: tuple[str, list[Entry], dict[str, float], Storage]
                 ) -> list[tuple[str, int, int, np.ndarray]]:
    """In a worker: fetch a group of byte ranges of one object, decode and cut each message.

    Workers fetch for themselves so the megabytes of GRIB never cross a process boundary;
    only the small regional arrays come back. The Storage arrives pickled, settings only;
    a worker keeps the first one it gets, so its tasks share its connections.
    """
    url, entries, region, storage = task
    storage = _WORKER_STORAGES.setdefault(storage, storage)
    parts = storage.read_ranges(url, [(off, n) for _, _, _, off, n in entries])
    name = url.rsplit("/", 1)[-1]
    return [(var, member, step,
             decode_region((buf, region, member, f"{var} member {member} step {step} ({name})")))
            for (var, member, step, _, _), buf in zip(entries, parts, strict=True)]


def batch_tasks(index_files: list[str | Path], members: tuple[int, ...]) -> list[tuple[str, list[Entry]]]:
    tasks = []
    for path in index_files:
        idx = receipts.read(path)
        for obj in idx["objects"]:
            entries = [(e["var"], e["member"], idx["step"], e["offset"], e["length"])
                       for e in obj["messages"] if e["member"] in members]
            entries.sort(key=lambda e: e[3])  # file order: adjacent ranges merge into one request
            tasks += [(obj["url"], entries[i:i + TASK_MESSAGES])
                      for i in range(0, len(entries), TASK_MESSAGES)]
    return tasks


def deaccumulate(values: np.ndarray, axis: int = -3, nonnegative: bool = True) -> np.ndarray:
    """Totals from step 0 → per-interval totals (first entry is the step before).

    Packing noise can make an interval of a non-negative quantity dip below zero; only
    those are clipped (net thermal radiation `str` is negative by nature).
    """
    out = np.diff(values, axis=axis)
    if nonnegative:
        np.maximum(out, 0.0, out=out, where=~np.isnan(out))
    return out


def build_batch(storage: Storage, plan: Plan, members: tuple[int, ...],
                index_files: list[str | Path], workers: int) -> dict[str, np.ndarray]:
    """Arrays per variable, shape (members, steps, lat, lon), float32."""
    started = time.perf_counter()
    pos = {m: i for i, m in enumerate(members)}
    region_shape: tuple[int, int] | None = None
    raw: dict[str, np.ndarray] = {}
    count = 0
    tasks = batch_tasks(index_files, members)
    nbytes = sum(n for _, entries in tasks for *_, n in entries)
    with _pool(workers) as pool:
        futures = [pool.submit(fetch_decode, (url, entries, plan.region, storage))
                   for url, entries in tasks]
        for fut in as_completed(futures):
            for name, member, step, values in fut.result():
                var = next(v for v in plan.variables if v.name == name)
                steps = plan.fetch_steps(var)
                if region_shape is None:
                    region_shape = values.shape
                elif values.shape != region_shape:
                    raise OpenDataError(f"{name} member {member} step {step}: region "
                                        f"{values.shape}, others {region_shape}")
                if name not in raw:
                    raw[name] = np.full((len(members), len(steps), *values.shape), np.nan, np.float32)
                raw[name][pos[member], steps.index(step)] = values
                count += 1
    out = {}
    for var in plan.variables:
        if var.name not in raw or np.isnan(raw[var.name]).all(axis=(-1, -2)).any():
            raise OpenDataError(f"batch {members}: {var.name} incomplete after decoding")
        if var.accumulated and plan.per_interval:
            out[var.name] = deaccumulate(raw[var.name], axis=1, nonnegative=var.nonnegative)
        else:
            out[var.name] = raw[var.name]
    elapsed = time.perf_counter() - started
    log.info("batch %s: %d messages, %.1f MB in %.1fs (%.1f msg/s, %d workers)", members, count,
             nbytes / 1e6, elapsed, count / elapsed, workers)
    return out


# ------------------------------------------------------------------ store


def store_schema(plan: Plan, lats: np.ndarray, lons: np.ndarray, synthetic: bool
                 ) -> ensemble_store.StoreSchema:
    """One store holds every cycle: (time, member, step, latitude, longitude) per variable."""
    member_axis = np.arange(0, max(plan.members) + 1, dtype=np.int32)
    arrays = tuple(
        ensemble_store.ArraySpec(
            v.name, ("member", "step", "latitude", "longitude"),
            (member_axis.size, len(plan.steps), lats.size, lons.size),
            {"units": UNITS.get(v.param, "unknown"), "ecmwf_param": v.param,
             "levtype": v.levtype, **({"level_hPa": v.levelist} if v.levelist else {}),
             **({"accumulation": ACCUMULATION_TEXT[plan.accumulation]} if v.accumulated else {})})
        for v in plan.variables)
    return ensemble_store.StoreSchema(
        coords={"member": member_axis, "step": np.asarray(plan.steps, dtype=np.int32),
                "latitude": lats.astype(np.float64), "longitude": lons.astype(np.float64)},
        coord_attrs={"step": {"units": "hours", "long_name": "forecast step"},
                     "latitude": {"units": "degrees_north"}, "longitude": {"units": "degrees_east"},
                     "member": {"long_name": "ensemble member (0 = control)"}},
        arrays=arrays,
        attrs={"title": "IFS-ENS inputs for cGAN (ECMWF open data)", "synthetic": synthetic,
               "region": json.dumps(plan.region)},
        time_units=HOURS_SINCE_1900,
    )


def store_from(settings: Settings) -> Any:
    """The archive store, reached as the buckets are; on its own S3 server when
    `cgan.store_endpoint_url` names one."""
    c = settings.cgan
    storage = Storage.from_settings(settings)
    if c.store_endpoint_url:
        storage = dataclasses.replace(storage, s3_endpoint_url=c.store_endpoint_url)
    return ensemble_store.open_repo(c.store, storage)


def setup(settings: Settings, index_files: list[str | Path], out: str | Path) -> None:
    """Every step's index (`index_files` in the plan's step order, fetched side by side),
    then the run branch with arrays grown for the cycle, placed by the first message's
    coordinates."""
    plan = plan_from(settings)
    steps = plan.all_steps
    if len(index_files) != len(steps):
        raise ValueError(f"{len(index_files)} index files for {len(steps)} steps")
    with ThreadPoolExecutor(max_workers=min(8, len(steps))) as pool:
        list(pool.map(lambda step_out: select_step(settings, *step_out), zip(steps, index_files,
                                                                            strict=True)))
    idx = receipts.read(index_files[0])
    obj = idx["objects"][0]
    first = obj["messages"][0]
    buf = Storage.from_settings(settings).read_ranges(
        obj["url"], [(first["offset"], first["length"])])[0]
    lats, lons = region_coords(buf, plan.region)
    with ensemble_store.commits_serialized(settings.cgan.store):
        ensemble_store.setup(store_from(settings), store_schema(plan, lats, lons, settings.synthetic),
                             plan.cycle, hours_since_1900(plan.base), out)


def write_batch(settings: Settings, batch: int, index_files: list[str | Path], workers: int,
                setup_record: str | Path, fork_path: str | Path, sums_path: str | Path) -> None:
    """The batch's members into a fork of the store, and their partial sums beside it."""
    plan = plan_from(settings)
    members = plan.batches()[batch]
    arrays = build_batch(Storage.from_settings(settings), plan, members, index_files, workers)
    ensemble_moments.save(sums_path, plan.cycle, members,
                          {name: ensemble_moments.of_members(v) for name, v in arrays.items()})
    record = ensemble_store.SetupRecord.load(setup_record)

    def write(root: Any, t: int) -> ensemble_store.Coverage:
        lo, hi = members[0], members[-1] + 1
        for name, values in arrays.items():
            root[name][t, lo:hi] = values
        return {name: [m for m, block in zip(members, values, strict=True)
                       if not np.isnan(block).all()] for name, values in arrays.items()}

    ensemble_store.write_fork(store_from(settings), record, write, fork_path)


def publish(settings: Settings, setup_record: str | Path, fork_paths: list[str | Path],
            out: str | Path) -> None:
    plan = plan_from(settings)
    record = ensemble_store.SetupRecord.load(setup_record)

    def complete(coverage: dict[str, set[int]]) -> None:
        for v in plan.variables:
            bad = sorted(set(plan.members) - coverage.get(v.name, set()))
            if bad:
                raise ensemble_store.PublishError(f"{v.name}: members {bad} missing; not publishing")

    with ensemble_store.commits_serialized(settings.cgan.store):
        result = ensemble_store.publish(store_from(settings), record, fork_paths, check=complete)
    receipts.write(out, {"cycle": plan.cycle, "store": settings.cgan.store,
                         "members": list(plan.members), **result})


# ------------------------------------------------------------------ product


def reader_attrs(plan: Plan) -> dict[str, Any]:
    """Global attributes the team's plotting and validation code reads (plot_tp_maps.py
    evaluates `forecast_hours` as a Python list)."""
    return {"model_date": f"{plan.base:%Y-%m-%d}", "model_run": f"{plan.base:%H}Z",
            "forecast_hours": str(list(plan.steps)), "n_ensemble_members": len(plan.members),
            "institution": "ICPAC", "source": "ECMWF IFS Ensemble"}


def published_moments(plan: Plan, pub: dict[str, Any], sums_files: list[str | Path]
                      ) -> dict[str, ensemble_moments.Moments] | None:
    """The cycle's moments from the batches' partial sums, when they are what was published:
    a fresh publish of batches that hold every member once. Else None (read the store)."""
    if pub.get("already_published"):
        return None  # a batch redone after its cycle was published: the store is the truth
    parts, seen = [], []
    for path in sums_files:
        members, moments = ensemble_moments.load(path, plan.cycle)
        seen += members
        parts.append(moments)
    if sorted(seen) != sorted(plan.members):
        log.warning("partial sums hold members %s, the cycle %s: reading the store",
                    sorted(seen), list(plan.members))
        return None
    return {v.name: ensemble_moments.combine([p[v.name] for p in parts]) for v in plan.variables}


def write_netcdf(settings: Settings, published: str | Path, index_files: list[str | Path],
                 sums_files: list[str | Path], out: str | Path) -> None:
    """Ensemble mean and standard deviation of the published cycle: from the batches'
    partial sums (no re-read of the ensemble), or from the published snapshot."""
    import xarray as xr

    from ensflow.adapters.regrid import bilinear_regular

    plan = plan_from(settings)
    c = settings.cgan
    pub = receipts.read(published)
    repo = store_from(settings)
    session = repo.readonly_session(snapshot_id=pub["snapshot"])
    ds = xr.open_zarr(session.store, consolidated=False)
    t = int(np.flatnonzero(ds["time"].values == np.datetime64(plan.base))[0])
    cycle = ds.isel(time=t).sel(member=list(plan.members))
    lats, lons = cycle["latitude"].values, cycle["longitude"].values
    if c.output_grid == "cgan_0p1":
        new_lats = np.linspace(*CGAN_0P1["lat"])
        new_lons = np.linspace(*CGAN_0P1["lon"])
    else:
        new_lats, new_lons = lats, lons
    # CF times written as numbers with the exact units string the cGAN reads
    time_attrs = {"units": HOURS_SINCE_1900, "calendar": "gregorian"}
    init_hours = float(hours_since_1900(plan.base))
    valid = np.array([init_hours + s for s in plan.steps], dtype=np.float64)
    moments = published_moments(plan, pub, sums_files)
    out_vars = {}
    for v in plan.variables:
        # (member, step, lat, lon) read back only when there are no partial sums to use
        m = (moments[v.name] if moments is not None
             else ensemble_moments.of_members(cycle[v.name].values))
        mean, std = ensemble_moments.mean_std(m, c.ddof)
        stats = {"ensemble_mean": mean, "ensemble_standard_deviation": std}
        for kind, field in stats.items():
            if c.output_grid == "cgan_0p1":
                field = bilinear_regular(field, lats, lons, new_lats, new_lons)
            attrs = {"units": cycle[v.name].attrs.get("units", "unknown"),
                     "long_name": f"{v.output_name} {kind.replace('_', ' ')}",
                     "ecmwf_param": v.param}
            if v.accumulated:
                attrs["accumulation"] = ACCUMULATION_TEXT[plan.accumulation]
            out_vars[f"{v.output_name}_{kind}"] = (("time", "valid_time", "latitude", "longitude"),
                                            field[None].astype(np.float32), attrs)
    sources = sorted({o["url"] for p in index_files for o in receipts.read(p)["objects"]})
    product = xr.Dataset(
        out_vars,
        coords={"time": ("time", [init_hours], {**time_attrs, "standard_name": "forecast_reference_time"}),
                "valid_time": ("valid_time", valid, {**time_attrs, "standard_name": "time"}),
                "latitude": ("latitude", new_lats, {"units": "degrees_north"}),
                "longitude": ("longitude", new_lons, {"units": "degrees_east"})},
        attrs={
            "title": "IFS-ENS ensemble statistics for cGAN", **reader_attrs(plan),
            "cycle": plan.cycle, "accumulation": ACCUMULATION_TEXT[plan.accumulation],
            "members": ",".join(map(str, plan.members)), "members_count": len(plan.members),
            "ddof": c.ddof, "output_grid": c.output_grid,
            "store": c.store, "store_snapshot": pub["snapshot"], "store_tag": pub["tag"],
            "source_urls": " ".join(sources), "code_version": code_version(),
            "synthetic": int(bool(settings.synthetic)),
            "provenance": json.dumps(record(settings)),
        })
    enc: dict[str, dict[str, Any]] = {k: {"dtype": "float32", "zlib": True, "complevel": 4}
                                      for k in out_vars}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    product.to_netcdf(tmp, encoding=enc, engine="netcdf4")
    os.replace(tmp, out)
    log.info("wrote %s: %d variables, %s grid, statistics from %s", out, len(out_vars),
             c.output_grid, "the batches' partial sums" if moments is not None else "the store")
