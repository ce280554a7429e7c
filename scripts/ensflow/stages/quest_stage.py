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

from ensflow import receipts
from ensflow.adapters import ensemble_store, quest_climatology
from ensflow.adapters.storage import Storage
from ensflow.config import Settings
from ensflow.cycle import hours_since_1900, member_id
from ensflow.errors import EnsflowError
from ensflow.layout import (
    forecast_filename,
    forecast_object,
    forecast_windows,
    submission_name,
)
from ensflow.science import quest

log = logging.getLogger(__name__)


def variables(settings: Settings) -> list[quest.QuestVar]:
    return [quest.VARIABLES[v] for v in settings.quest.variables]


def store_from(settings: Settings) -> Any:
    """The archive store, reached as the buckets are."""
    return ensemble_store.open_repo(settings.quest.store, Storage.from_settings(settings))


def store_schema(settings: Settings) -> ensemble_store.StoreSchema:
    steps = quest.needed_steps(variables(settings))
    members = np.arange(1, settings.max_member + 1, dtype=np.int32)
    arrays = tuple(
        ensemble_store.ArraySpec(v.name, ("member", "step", "latitude", "longitude"),
                                 (members.size, len(steps), quest.NLAT, quest.NLON),
                                 {"units": v.model_units, "model_param": v.param,
                                  **({"accumulation": "since step 0"} if v.accumulated else {})})
        for v in variables(settings))
    return ensemble_store.StoreSchema(
        coords={"member": members, "step": np.asarray(steps, np.int32),
                "latitude": quest.LATITUDES, "longitude": quest.LONGITUDES},
        coord_attrs={"step": {"units": "hours"}, "latitude": {"units": "degrees_north"},
                     "longitude": {"units": "degrees_east"}},
        arrays=arrays,
        attrs={"title": "AIFS-ENS members on the AI Weather Quest 1.5° grid",
               "synthetic": bool(settings.synthetic)},
    )


def time_value(settings: Settings) -> int:
    return hours_since_1900(quest.issue_date(settings.cycle))


def setup(settings: Settings, out: str | Path) -> None:
    quest.check_issue_date(settings.cycle, settings.quest.allow_any_issue_date)
    with ensemble_store.commits_serialized(settings.quest.store):
        ensemble_store.setup(store_from(settings), store_schema(settings), settings.cycle,
                             time_value(settings), out)


def member_fields_from_bucket(settings: Settings, member: int, upload_receipt: str | Path,
                              out: str | Path) -> None:
    """For cycles produced earlier: the member's GRIB windows from the bucket, regridded."""
    steps = quest.needed_steps(variables(settings))
    windows = [(a, b) for a, b in forecast_windows(settings.forecast.lead_time,
                                                   settings.forecast.hours_per_file)
               if any(a < s <= b for s in steps)]
    receipts.read(upload_receipt)  # the objects are in the bucket
    scratch = Path(settings.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    storage = Storage.from_settings(settings)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"quest_{member_id(member)}_") as tmp:
        paths = []
        for a, b in windows:
            name = forecast_filename(settings.cycle, member, a, b)
            storage.get_file(forecast_object(settings.bucket, settings.cycle, name), Path(tmp) / name)
            paths.append(Path(tmp) / name)
        fields = quest.from_grib_files(paths, variables(settings), settings.quest.methods)
    quest.save_member_fields(out, fields, steps, settings.cycle, member, "bucket")


def write_member(settings: Settings, member: int, fields_path: str | Path,
                 setup_record: str | Path, fork_path: str | Path) -> None:
    fields, steps, meta = quest.load_member_fields(fields_path)
    if meta["member"] != member or meta["cycle"] != settings.cycle:
        raise EnsflowError(f"{fields_path}: holds member {meta['member']} of {meta['cycle']}")
    if steps != quest.needed_steps(variables(settings)):
        raise EnsflowError(f"{fields_path}: steps differ from the configured quest variables")
    record = ensemble_store.SetupRecord.load(setup_record)

    def write(root: Any, t: int) -> ensemble_store.Coverage:
        for v in variables(settings):
            values = fields[v.name]
            used = [steps.index(s) for s in quest.needed_steps([v])]
            if not np.isfinite(values[used]).all():
                raise EnsflowError(f"member {member_id(member)}: {v.name} has non-finite values")
            root[v.name][t, member - 1] = values
        return {v.name: [member - 1] for v in variables(settings)}

    ensemble_store.write_fork(store_from(settings), record, write, fork_path)


def publish(settings: Settings, setup_record: str | Path, fork_paths: list[str | Path],
            out: str | Path) -> None:
    """One commit for the cycle, only with the whole ensemble (or as the config allows).

    `quest.expected_members` is the ensemble the products stand for (default: the members
    requested); fewer members are published only with `quest.allow_partial`, at least
    `quest.min_members`, and the products then say so.
    """
    q = settings.quest
    requested = list(settings.members)
    expected = q.expected_members or len(requested)
    record = ensemble_store.SetupRecord.load(setup_record)
    present: list[int] = []

    def complete(coverage: dict[str, set[int]]) -> None:
        written = coverage.get(variables(settings)[0].name, set())
        present.extend(m for m in requested if m - 1 in written)
        missing = sorted(set(requested) - set(present))
        if missing:
            raise ensemble_store.PublishError(
                f"members {', '.join(map(str, missing))} have no data in the store; not publishing")
        if len(present) < expected and not q.allow_partial:
            raise ensemble_store.PublishError(
                f"{len(present)} of {expected} members; not publishing an incomplete ensemble "
                "(set quest.allow_partial: true to accept it)")
        if len(present) < (q.min_members or 1):
            raise ensemble_store.PublishError(
                f"{len(present)} members, fewer than quest.min_members={q.min_members}")

    with ensemble_store.commits_serialized(settings.quest.store):
        result = ensemble_store.publish(store_from(settings), record, fork_paths, check=complete)
    members = present or requested
    receipts.write(out, {"cycle": settings.cycle, "store": q.store, "members": members,
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


def synthetic_climatology(settings: Settings, published: str | Path, out_files: list[str | Path]
                          ) -> None:
    """Demo thresholds in the quest's files: quintiles of the ensemble pooled over each
    point's 3 × 3 neighbours, one file per variable and week as the quest's server has them.

    There is no real climatology offline; this one is labelled synthetic and is only meant
    to exercise the chain (it is near-calibrated for the demo ensemble by construction).
    """
    data, _, steps, _ = load_cycle(settings, published)
    units = settings.quest.climatology_units
    issue = quest.issue_date(settings.cycle)
    by_name = {Path(p).name: Path(p) for p in out_files}
    for var, period, valid in quest_climatology.needed(issue, [v.name for v in variables(settings)]):
        v = quest.VARIABLES[var]
        weekly = quest.convert_units(quest.weekly(data[var].astype(np.float64), steps, v, period),
                                     v, units[var])
        padded = np.pad(weekly, ((0, 0), (1, 1), (0, 0)), mode="edge")
        pooled = np.concatenate([np.roll(padded, (dy, dx), axis=(1, 2))[:, 1:-1]
                                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        thresholds = np.quantile(pooled, quest_climatology.QUANTILES, axis=0)
        quest_climatology.write_synthetic(by_name[quest_climatology.filename(var, valid)], var,
                                          valid, thresholds, units[var])


def climatology_names(settings: Settings) -> list[str]:
    """The climatology files a cycle's products read, in the quest's names."""
    issue = quest.issue_date(settings.cycle)
    return [quest_climatology.filename(v, valid)
            for v, _, valid in quest_climatology.needed(issue, settings.quest.variables)]


def submission_names(settings: Settings) -> list[str]:
    """The submission files, in `quest.products` order."""
    q, issue = settings.quest, quest.issue_date(settings.cycle)
    return [submission_name(v, issue, p, q.team, q.model) for v, p in quest.products(q.variables)]


def climatology_paths(settings: Settings) -> list[str]:
    """The files' paths under the server's root (or a mirror's URL prefix)."""
    issue = quest.issue_date(settings.cycle)
    return [quest_climatology.remote_path(v, valid)
            for v, _, valid in quest_climatology.needed(issue, settings.quest.variables)]


def fetch_climatology(settings: Settings, out_files: list[str | Path], record: str | Path) -> None:
    """Each variable's file for each forecast week, from the quest's server (or a mirror of
    its layout), checked before anything uses it."""
    q = settings.quest
    issue = quest.issue_date(settings.cycle)
    by_name = {Path(p).name: Path(p) for p in out_files}
    storage = Storage.from_settings(settings)
    checks = []
    for var, period, valid in quest_climatology.needed(issue, q.variables):
        dest = by_name[quest_climatology.filename(var, valid)]
        info = quest_climatology.fetch_checked(storage, q.climatology, var, valid, dest,
                                               q.password_env, q.climatology_units[var])
        checks.append({"variable": var, "period": period, **info})
        log.info("climatology %s: week of %s, units %s%s", dest.name, info["valid_date"],
                 info["units"], ", reordered to 90→−90 / 0→358.5" if info["reordered"] else "")
    receipts.write(record, {"cycle": settings.cycle, "source": q.climatology, "files": checks})


def products(settings: Settings, published: str | Path, climatology_dir: str | Path,
             out_files: list[str], anomalies_path: str | Path, report_path: str | Path) -> None:
    """Six submission files (3 variables × 2 periods, `quest.products` order), each checked;
    the ensemble-mean anomalies the maps draw; a sanity report."""
    q = settings.quest
    data, members, steps, pub = load_cycle(settings, published)
    issue = quest.issue_date(settings.cycle)
    out_paths = dict(zip(quest.products(q.variables), map(Path, out_files), strict=True))
    anomalies: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {"cycle": settings.cycle, "members": members,
                              "partial": pub.get("partial", False), "files": {}}
    for v in variables(settings):
        for p in quest.PERIODS:
            weekly = quest.weekly(data[v.name].astype(np.float64), steps, v, p)
            weekly = quest.convert_units(weekly, v, q.climatology_units[v.name])
            valid = quest_climatology.week_start(issue, p)
            climatology = Path(climatology_dir) / quest_climatology.filename(v.name, valid)
            thresholds, _ = quest_climatology.load_checked(climatology, v.name, valid,
                                                           q.climatology_units[v.name])
            probs = quest.quintile_probabilities(weekly, thresholds)
            checks = quest.sanity(v, weekly, probs, len(members),
                                  pub.get("expected_members", len(members)), q.allow_partial)
            attrs = quest.provenance_attrs(settings, {
                "cycle": settings.cycle, "members": members, "members_count": len(members),
                "expected_members": pub.get("expected_members", len(members)),
                "partial_ensemble": pub.get("partial", False), "store_snapshot": pub["snapshot"],
                "store": q.store, "climatology": climatology.name,
                "climatology_source": q.climatology, "window_hours": quest.window_hours(v, p),
                "units_compared": q.climatology_units[v.name]})
            da = quest.submission_array(probs, v, issue, p, attrs)
            quest.offline_checks(da, v.name, issue, p)
            out = out_paths[(v.name, p)]
            out.parent.mkdir(parents=True, exist_ok=True)
            quest.write_netcdf(da, out)
            anomalies[anomaly_key(v.name, p)] = weekly.mean(axis=0) - thresholds[1:3].mean(axis=0)
            report["files"][out.name] = checks
            log.info("%s: balance %s%s", out.name, checks["quintile_balance"],
                     " (FLAGGED)" if checks["balance_flag"] else "")
    quest.save_fields(anomalies_path, anomalies)
    receipts.write(report_path, report)


def anomaly_key(var: str, period: int) -> str:
    return f"{var}_p{period}"


def plots(settings: Settings, submissions: list[str], anomalies_path: str | Path,
          pngs: list[str]) -> None:
    """Maps per variable and week: ensemble-mean anomaly and most likely quintile (ties shown
    as ties), globally and over East Africa, with coastlines and borders."""
    import matplotlib.pyplot as plt
    import xarray as xr

    from ensflow.adapters import maps

    q = settings.quest
    issue = quest.issue_date(settings.cycle)
    synthetic = " (synthetic demo data)" if settings.synthetic else ""
    with np.load(anomalies_path, allow_pickle=False) as z:
        anomalies = {k: z[k] for k in z.files}
    for (var, period), submission, png in zip(quest.products(q.variables), submissions, pngs,
                                              strict=True):
        v = quest.VARIABLES[var]
        da = xr.open_dataarray(submission)
        anomaly = anomalies[anomaly_key(var, period)]
        first, last = quest.valid_dates(issue, period)
        fig = maps.quest_figure(
            anomaly, da.values, da["latitude"].values, da["longitude"].values,
            f"AIFS-ENS {settings.cycle}{synthetic}: {v.standard_name}, week {period} "
            f"({first:%d %b}–{last:%d %b %Y})",
            f"{var} anomaly vs climatological median ({q.climatology_units[var]})")
        fig.savefig(png, dpi=70)
        plt.close(fig)


def prepare_upload(settings: Settings, files: list[str | Path], out: str | Path) -> None:
    """Check the submission is ready and credentials are present; never print them."""
    q = settings.quest
    password = os.environ.get(q.password_env)
    if not password:
        raise EnsflowError(f"quest upload needs the password in ${q.password_env} (not set)")
    receipts.write(out, {"cycle": settings.cycle, "team": q.team, "model": q.model,
                         "files": [str(f) for f in files], "credentials": "present",
                         "next": "AI_WQ_package.forecast_submission.AI_WQ_forecast_submission"})
