"""Stage: AI Weather Quest products, wired for Snakemake rules.

member fields (in the forecast job, or from bucket GRIB) → forks of the `aifs_ens_1p5`
store → one publish (every requested member present, unless the config accepts fewer)
→ weekly windows → quintile probabilities → six submission files, sanity report, maps.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import ensemble_store, quest, receipts, storage
from .config import Settings
from .cycle import hours_since_1900, member_id
from .errors import EnsflowError
from .naming import forecast_filename, forecast_object, forecast_windows

log = logging.getLogger(__name__)


def variables(settings: Settings) -> list[quest.QuestVar]:
    return [quest.VARIABLES[v] for v in settings.raw["quest"]["variables"]]


def store_from(settings: Settings) -> Any:
    q = settings.raw["quest"]
    return ensemble_store.open_repo(q["store"], region=settings.raw["opendata"].get("region"))


def layout(settings: Settings) -> ensemble_store.Layout:
    steps = quest.needed_steps(variables(settings))
    members = np.arange(1, settings.raw["max_member"] + 1, dtype=np.int32)
    arrays = tuple(
        ensemble_store.ArraySpec(v.name, ("member", "step", "latitude", "longitude"),
                                 (members.size, len(steps), quest.NLAT, quest.NLON),
                                 {"units": v.model_units, "model_param": v.param,
                                  **({"accumulation": "since step 0"} if v.accumulated else {})})
        for v in variables(settings))
    return ensemble_store.Layout(
        coords={"member": members, "step": np.asarray(steps, np.int32),
                "latitude": quest.LATITUDES, "longitude": quest.LONGITUDES},
        coord_attrs={"step": {"units": "hours"}, "latitude": {"units": "degrees_north"},
                     "longitude": {"units": "degrees_east"}},
        arrays=arrays,
        attrs={"title": "AIFS-ENS members on the AI Weather Quest 1.5° grid",
               "synthetic": bool(settings.raw["synthetic"])},
    )


def time_value(settings: Settings) -> int:
    return hours_since_1900(quest.issue_date(settings.cycle))


def setup(settings: Settings, out: str | Path) -> None:
    ensemble_store.setup(store_from(settings), layout(settings), settings.cycle,
                         time_value(settings), out)


def member_fields_from_bucket(settings: Settings, member: int, upload_receipt: str | Path,
                              out: str | Path) -> None:
    """For cycles produced earlier: the member's GRIB windows from the bucket, regridded."""
    cfg = settings.raw
    steps = quest.needed_steps(variables(settings))
    windows = [(a, b) for a, b in forecast_windows(cfg["forecast"]["lead_time"],
                                                   cfg["forecast"]["hours_per_file"])
               if any(a < s <= b for s in steps)]
    receipts.read(upload_receipt)  # the objects are in the bucket
    scratch = Path(cfg["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"quest_{member_id(member)}_") as tmp:
        paths = []
        for a, b in windows:
            name = forecast_filename(settings.cycle, member, a, b)
            storage.get_file(forecast_object(cfg["bucket"], settings.cycle, name), Path(tmp) / name)
            paths.append(Path(tmp) / name)
        fields = quest.from_grib_files(paths, variables(settings), cfg["quest"]["methods"])
    quest.save_member_fields(out, fields, steps, settings.cycle, member, "bucket")


def write_member(settings: Settings, member: int, fields_path: str | Path,
                 setup_record: str | Path, fork_path: str | Path) -> None:
    fields, steps, meta = quest.load_member_fields(fields_path)
    if meta["member"] != member or meta["cycle"] != settings.cycle:
        raise EnsflowError(f"{fields_path}: holds member {meta['member']} of {meta['cycle']}")
    if steps != quest.needed_steps(variables(settings)):
        raise EnsflowError(f"{fields_path}: steps differ from the configured quest variables")
    record = ensemble_store.SetupRecord.load(setup_record)

    def write(root: Any, t: int) -> None:
        for v in variables(settings):
            values = fields[v.name]
            used = [steps.index(s) for s in quest.needed_steps([v])]
            if not np.isfinite(values[used]).all():
                raise EnsflowError(f"member {member_id(member)}: {v.name} has non-finite values")
            root[v.name][t, member - 1] = values

    ensemble_store.write_fork(store_from(settings), record, write, fork_path)


def publish(settings: Settings, setup_record: str | Path, fork_paths: list[str | Path],
            out: str | Path) -> None:
    """One commit for the cycle, only with the whole ensemble (or as the config allows).

    `quest.expected_members` is the ensemble the products stand for (default: the members
    requested); fewer members are published only with `quest.allow_partial`, at least
    `quest.min_members`, and the products then say so.
    """
    q = settings.raw["quest"]
    requested = list(settings.members)
    expected = q["expected_members"] or len(requested)
    record = ensemble_store.SetupRecord.load(setup_record)
    present: list[int] = []

    def complete(root: Any, t: int) -> None:
        data = root[variables(settings)[0].name][t]
        present.extend(m for m in requested if not np.isnan(data[m - 1]).all())
        missing = sorted(set(requested) - set(present))
        if missing:
            raise ensemble_store.PublishError(
                f"members {', '.join(map(str, missing))} have no data in the store; not publishing")
        if len(present) < expected and not q["allow_partial"]:
            raise ensemble_store.PublishError(
                f"{len(present)} of {expected} members; not publishing an incomplete ensemble "
                "(set quest.allow_partial: true to accept it)")
        if len(present) < (q["min_members"] or 1):
            raise ensemble_store.PublishError(
                f"{len(present)} members, fewer than quest.min_members={q['min_members']}")

    result = ensemble_store.publish(store_from(settings), record, fork_paths, check=complete)
    members = present or requested
    receipts.write(out, {"cycle": settings.cycle, "store": q["store"], "members": members,
                         "expected_members": expected, "partial": len(members) < expected,
                         **result})


def load_cycle(settings: Settings, published: str | Path
               ) -> tuple[dict[str, np.ndarray], list[int], list[int], dict[str, Any]]:
    """The published cycle's fields per variable (members, steps, lat, lon)."""
    import zarr

    pub = receipts.read(published)
    session = store_from(settings).readonly_session(snapshot_id=pub["snapshot"])
    root = zarr.open_group(store=session.store, mode="r")
    times = root["time"][:].tolist()
    t = times.index(time_value(settings))
    members = list(pub["members"])
    steps = [int(s) for s in root["step"][:]]
    data = {v.name: root[v.name][t][[m - 1 for m in members]] for v in variables(settings)}
    return data, members, steps, pub


def synthetic_climatology(settings: Settings, published: str | Path, out: str | Path) -> None:
    """Demo thresholds: quintiles of the ensemble pooled over each point's 3 × 3 neighbours.

    There is no real climatology offline; this one is labelled synthetic and is only meant
    to exercise the chain (it is near-calibrated for the demo ensemble by construction).
    """
    import xarray as xr

    data, _, steps, _ = load_cycle(settings, published)
    units = settings.raw["quest"]["climatology_units"]
    issue = quest.issue_date(settings.cycle)
    data_vars = {}
    for v in variables(settings):
        for p in quest.PERIODS:
            weekly = quest.convert_units(quest.weekly(data[v.name].astype(np.float64), steps, v, p),
                                         v, units[v.name])
            padded = np.pad(weekly, ((0, 0), (1, 1), (0, 0)), mode="edge")
            pooled = np.concatenate([np.roll(padded, (dy, dx), axis=(1, 2))[:, 1:-1]
                                     for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
            thresholds = np.quantile(pooled, [0.2, 0.4, 0.6, 0.8], axis=0)
            first, _ = quest.valid_dates(issue, p)
            data_vars[f"{v.name}_p{p}"] = (("quantile", "latitude", "longitude"), thresholds,
                                           {"units": units[v.name],
                                            "valid_from": first.strftime("%Y-%m-%d")})
    ds = xr.Dataset(data_vars, coords={"quantile": [0.2, 0.4, 0.6, 0.8],
                                       "latitude": quest.LATITUDES, "longitude": quest.LONGITUDES},
                    attrs={"synthetic": 1, "title": "synthetic weekly quintile thresholds (demo only)"})
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out)


def open_climatology(path_or_url: str) -> Any:
    """The climatology file, fetched once when it lives in a bucket."""
    import xarray as xr

    local = path_or_url
    if "://" in path_or_url and not path_or_url.startswith("file://"):
        fd, local = tempfile.mkstemp(suffix=".nc")
        os.close(fd)
        storage.get_file(path_or_url, local)
    return xr.load_dataset(local.removeprefix("file://"))


def read_climatology(settings: Settings, ds: Any, source: str, var: quest.QuestVar,
                     period: int) -> np.ndarray:
    name = f"{var.name}_p{period}"
    if name not in ds:
        raise EnsflowError(f"climatology {source}: no variable {name}")
    units = ds[name].attrs.get("units")
    want = settings.raw["quest"]["climatology_units"][var.name]
    if units != want:
        raise EnsflowError(f"climatology {source}: {name} is in {units!r}, config says {want!r}")
    return ds[name].values


def products(settings: Settings, published: str | Path, climatology: str, out_dir: str | Path,
             report_path: str | Path) -> None:
    """Six submission files (3 variables × 2 periods), each checked; a sanity report."""
    q = settings.raw["quest"]
    data, members, steps, pub = load_cycle(settings, published)
    issue = quest.issue_date(settings.cycle)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"cycle": settings.cycle, "members": members,
                              "partial": pub.get("partial", False), "files": {}}
    clim = open_climatology(climatology)
    for v in variables(settings):
        for p in quest.PERIODS:
            weekly = quest.weekly(data[v.name].astype(np.float64), steps, v, p)
            weekly = quest.convert_units(weekly, v, q["climatology_units"][v.name])
            thresholds = read_climatology(settings, clim, climatology, v, p)
            probs = quest.quintile_probabilities(weekly, thresholds)
            checks = quest.sanity(v, weekly, probs, len(members),
                                  pub.get("expected_members", len(members)), q["allow_partial"])
            attrs = quest.provenance_attrs(settings.raw, {
                "cycle": settings.cycle, "members": members, "members_count": len(members),
                "expected_members": pub.get("expected_members", len(members)),
                "partial_ensemble": pub.get("partial", False), "store_snapshot": pub["snapshot"],
                "store": q["store"], "climatology": climatology, "window_hours": quest.window_hours(v, p),
                "units_compared": q["climatology_units"][v.name]})
            da = quest.submission_array(probs, v, issue, p, attrs)
            quest.offline_checks(da, v.name, issue, p)
            name = quest.submission_name(v.name, issue, p, q["team"], q["model"])
            quest.write_netcdf(da, out_dir / name)
            np.save(out_dir / f".{v.name}_p{p}_mean_anomaly.npy",
                    weekly.mean(axis=0) - thresholds[1:3].mean(axis=0))
            report["files"][name] = checks
            log.info("%s: balance %s%s", name, checks["quintile_balance"],
                     " (FLAGGED)" if checks["balance_flag"] else "")
    receipts.write(report_path, report)


def plots(settings: Settings, out_dir: str | Path, pngs: list[str | Path]) -> None:
    """Maps: ensemble-mean anomaly and the most likely quintile, per variable and week."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    q = settings.raw["quest"]
    issue = quest.issue_date(settings.cycle)
    out_dir = Path(out_dir)
    for png in pngs:
        png = Path(png)
        var, period = png.stem.split("_p")[0], int(png.stem.split("_p")[1][0])
        v = quest.VARIABLES[var]
        da = xr.open_dataarray(out_dir / quest.submission_name(var, issue, period, q["team"], q["model"]))
        anomaly = np.load(out_dir / f".{var}_p{period}_mean_anomaly.npy")
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
        extent = (0, 360, -90, 90)
        lim = float(np.nanmax(np.abs(anomaly))) or 1.0
        im0 = axes[0].imshow(anomaly, extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        axes[0].set_title(f"{var} p{period}: ensemble-mean anomaly ({q['climatology_units'][var]})")
        fig.colorbar(im0, ax=axes[0])
        likely = da.values.argmax(axis=0) + 1
        im1 = axes[1].imshow(likely, extent=extent, cmap="viridis", vmin=1, vmax=5, aspect="auto")
        axes[1].set_title(f"{var} p{period}: most likely quintile")
        fig.colorbar(im1, ax=axes[1], ticks=[1, 2, 3, 4, 5])
        for ax in axes:
            ax.set_xlabel("longitude")
            ax.set_ylabel("latitude")
        synthetic = " (synthetic demo data)" if settings.raw["synthetic"] else ""
        fig.suptitle(f"AIFS-ENS {settings.cycle}{synthetic}: {v.standard_name}")
        fig.tight_layout()
        fig.savefig(png, dpi=80)
        plt.close(fig)


def prepare_upload(settings: Settings, files: list[str | Path], out: str | Path) -> None:
    """Check the submission is ready and credentials are present; never print them."""
    q = settings.raw["quest"]
    password = os.environ.get(q["password_env"])
    if not password:
        raise EnsflowError(f"quest upload needs the password in ${q['password_env']} (not set)")
    receipts.write(out, {"cycle": settings.cycle, "team": q["team"], "model": q["model"],
                         "files": [str(f) for f in files], "credentials": "present",
                         "next": "AI_WQ_package.forecast_submission.AI_WQ_forecast_submission"})
