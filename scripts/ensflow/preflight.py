"""Preflight: before an 8-hour run, find what is missing now, not at member 39.

Every check runs (one failing does not hide the next) and the job fails with one line per
problem. Nothing is downloaded; the only write is a tiny probe object in the bucket.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoint_info, opendata, receipts, storage
from .config import Settings
from .cycle import cycle_datetime
from .errors import EnsflowError
from .naming import join_url, opendata_object

log = logging.getLogger(__name__)


class PreflightError(EnsflowError):
    """One or more preconditions of the run are not met."""


def check_checkpoint(settings: Settings) -> str:
    path = settings.raw["checkpoint"]
    info = checkpoint_info.read(path)  # raises ConfigError naming the file
    return f"checkpoint {path}: {info.grid}, {len(info.input_fields)} input fields"


def check_credentials(settings: Settings) -> str:
    """Present, never printed: the name of the source is all that is said."""
    bucket = settings.raw["bucket"]
    if not bucket.startswith("gs://") or os.environ.get("STORAGE_EMULATOR_HOST"):
        return "no cloud credentials needed" if not bucket.startswith("gs://") else "GCS emulator"
    given = settings.raw["gcs"]["credentials_file"] or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if given:
        if not Path(given).is_file():
            raise PreflightError(f"GCS credentials file {given} does not exist")
        return "GCS credentials from a service-account file"
    try:
        import google.auth

        google.auth.default()
    except Exception:
        raise PreflightError("no GCS credentials: set gcs.credentials_file or "
                             "GOOGLE_APPLICATION_CREDENTIALS, or run where default credentials "
                             "exist") from None
    return "GCS application-default credentials"


def check_bucket(settings: Settings) -> str:
    probe = join_url(settings.raw["bucket"], settings.cycle, ".ensflow-preflight")
    local = Path(settings.raw["scratch"]) / ".preflight-probe"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"ensflow preflight\n")
    try:
        storage.put_file(local, probe)
        if storage.stat(probe) is None:
            raise PreflightError(f"bucket {settings.raw['bucket']}: probe object not visible after write")
        storage.delete(probe)
    except PreflightError:
        raise
    except Exception as exc:
        raise PreflightError(f"bucket {settings.raw['bucket']} is not writable: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        local.unlink(missing_ok=True)
    return f"bucket {settings.raw['bucket']} reachable and writable"


def _load_index(url: str) -> list[opendata.Message]:
    try:
        return opendata.load_index(url)
    except EnsflowError as exc:
        raise PreflightError(f"open data not published: {exc}") from None


def check_opendata_aifs(settings: Settings) -> str:
    """Both input dates' indices list every member's fields for the checkpoint."""
    from .input_state import _source_key, input_dates

    od = settings.raw["opendata"]
    layout = {"model": od["model"], "resol": od["resol"], "stream": od["stream"]}
    info = checkpoint_info.read(settings.raw["checkpoint"])
    count = 0
    problems = []
    for date in input_dates(cycle_datetime(settings.cycle), info.timestep_hours):
        url = opendata_object(od["root"], date, 0, **layout)
        try:
            messages = _load_index(url)
            available = {(m.param, m.levtype, m.levelist) for m in messages}
            wanted = [_source_key(s, n, available)[0] for n in settings.members
                      for s in info.input_fields]
            count += len(opendata.select(messages, wanted))
        except EnsflowError as exc:
            problems.append(f"{url}: {exc}")
    if problems:
        raise PreflightError("; ".join(problems))
    return f"open data: {count} input messages listed"


def check_opendata_cgan(settings: Settings) -> str:
    """Every step's index lists every (variable, member) the cGAN stage reads."""
    from .cgan import plan_from

    plan = plan_from(settings)
    count = 0
    problems = []
    for step in plan.all_steps:
        wanted = [(v.param, v.levtype, v.levelist, m) for v in plan.variables
                  if step in plan.fetch_steps(v) for m in plan.members]
        try:
            count += len(opendata.select(_load_index(plan.url(step)), wanted))
        except EnsflowError as exc:
            problems.append(f"{plan.url(step)}: {exc}")
    if problems:
        raise PreflightError("; ".join(problems[:5]))
    return f"open data: {count} cGAN messages listed"


def member_scratch_bytes(settings: Settings) -> int:
    """A member's peak on scratch: its input pickle plus its 11 GRIB files."""
    info = checkpoint_info.read(settings.raw["checkpoint"])
    fc = settings.raw["forecast"]
    pickle_bytes = len(info.input_fields) * 2 * info.npoints * 4
    steps = fc["lead_time"] // info.timestep_hours
    grib_bytes = steps * len(info.output_fields) * (info.npoints * fc["bits_per_value"] // 8 + 2000)
    return pickle_bytes + grib_bytes


def check_scratch(settings: Settings) -> str:
    scratch = Path(settings.raw["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    need = member_scratch_bytes(settings) * settings.raw["window"]
    free = shutil.disk_usage(scratch).free
    if free < need * 1.2:
        raise PreflightError(f"scratch {scratch}: {free / 1e9:.1f} GB free, window of "
                             f"{settings.raw['window']} members needs {need / 1e9:.1f} GB (+20%)")
    return f"scratch {scratch}: {free / 1e9:.1f} GB free for {need / 1e9:.2f} GB"


def check_gpu(settings: Settings) -> str:
    fc = settings.raw["forecast"]
    if not fc["device"].startswith("cuda"):
        return f"device {fc['device']}: no GPU needed"
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = fc["gpus"] or 1
    if found < want:
        raise PreflightError(f"forecast.device is {fc['device']} but {found} GPU(s) are visible "
                             f"(config wants {want})")
    return f"{found} GPU(s) visible"


def check_climatology(settings: Settings) -> str:
    q = settings.raw["quest"]
    if not q["enabled"]:
        return "quest off"
    if not q["climatology"]:
        return "synthetic climatology (made by the demo)"
    url = q["climatology"] if "://" in q["climatology"] else f"file://{q['climatology']}"
    if storage.stat(url) is None:
        raise PreflightError(f"climatology {q['climatology']} not found")
    return f"climatology {q['climatology']} present"


CHECKS: dict[str, dict[str, Callable[[Settings], str]]] = {
    "aifs": {
        "credentials": check_credentials,
        "checkpoint": check_checkpoint,
        "bucket": check_bucket,
        "open data": check_opendata_aifs,
        "scratch": check_scratch,
        "gpu": check_gpu,
        "climatology": check_climatology,
    },
    "cgan": {"open data": check_opendata_cgan},
}


def run(settings: Settings, stage: str, out: str | Path) -> None:
    """Run every check of a stage; fail with one line per problem."""
    checks = CHECKS[stage]
    results: dict[str, Any] = {}
    problems: list[str] = []
    for name, check in checks.items():
        try:
            results[name] = check(settings)
            log.info("preflight %s: ok (%s)", name, results[name])
        except EnsflowError as exc:
            problems.append(f"{name}: {exc}")
            log.error("preflight %s: %s", name, exc)
    if problems:
        raise PreflightError(f"preflight of {stage} failed:\n  " + "\n  ".join(problems))
    receipts.write(out, {"cycle": settings.cycle, "stage": stage, "checks": results})
