"""Preflight: before an 8-hour run, find what is missing now, not at member 39.

Every check runs (one failing does not hide the next) and the job fails with one line per
problem. It reads the open-data indices and the quest's climatology files (a few MB, to
check them as the products will); the only write is a tiny probe object in the bucket.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensflow import receipts
from ensflow.adapters import checkpoint_info
from ensflow.adapters.storage import Storage
from ensflow.config import Settings
from ensflow.errors import EnsflowError
from ensflow.layout import preflight_probe
from ensflow.science import opendata_needs

log = logging.getLogger(__name__)


class PreflightError(EnsflowError):
    """One or more preconditions of the run are not met."""


def check_checkpoint(settings: Settings) -> str:
    path = settings.checkpoint
    info = checkpoint_info.read(path)  # raises ConfigError naming the file
    return f"checkpoint {path}: {info.grid}, {len(info.input_fields)} input fields"


def check_credentials(settings: Settings) -> str:
    """Present, never printed: the name of the source is all that is said."""
    bucket = settings.bucket
    if not bucket.startswith("gs://") or os.environ.get("STORAGE_EMULATOR_HOST"):
        return "no cloud credentials needed" if not bucket.startswith("gs://") else "GCS emulator"
    given = settings.gcs.credentials_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
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
    probe = preflight_probe(settings.bucket, settings.cycle)
    local = Path(settings.scratch) / Path(probe).name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(b"ensflow preflight\n")
    storage = Storage.from_settings(settings)
    try:
        storage.put_file(local, probe)
        if storage.stat(probe) is None:
            raise PreflightError(f"bucket {settings.bucket}: probe object not visible after write")
        storage.delete(probe)
    except PreflightError:
        raise
    except Exception as exc:
        raise PreflightError(f"bucket {settings.bucket} is not writable: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        local.unlink(missing_ok=True)
    return f"bucket {settings.bucket} reachable and writable"


def _opendata(settings: Settings, stage: str, what: str) -> str:
    needs = opendata_needs.for_stage(settings, stage)
    problems = opendata_needs.missing(Storage.from_settings(settings), needs, shown=3)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise PreflightError("; ".join(problems[:10]) + more)
    return f"open data: {needs.count} {what} listed"


def check_opendata_aifs(settings: Settings) -> str:
    """Every input variable of every member is listed where the catalogue says ECMWF
    publishes it (enfo for members, the HRES stream for constants); a missing field is
    named with the request tried."""
    return _opendata(settings, "aifs", "input messages")


def check_opendata_cgan(settings: Settings) -> str:
    """Every step's index lists every (variable, member) the cGAN stage reads."""
    return _opendata(settings, "cgan", "cGAN messages")


def member_scratch_bytes(settings: Settings) -> int:
    """A member's peak on scratch: its input pickle plus its 11 GRIB files."""
    info = checkpoint_info.read(settings.checkpoint)
    fc = settings.forecast
    pickle_bytes = len(info.input_fields) * 2 * info.npoints * 4
    steps = fc.lead_time // info.timestep_hours
    grib_bytes = steps * len(info.output_fields) * (info.npoints * fc.bits_per_value // 8 + 2000)
    return pickle_bytes + grib_bytes


def check_scratch(settings: Settings) -> str:
    scratch = Path(settings.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    need = member_scratch_bytes(settings) * settings.window
    free = shutil.disk_usage(scratch).free
    if free < need * 1.2:
        raise PreflightError(f"scratch {scratch}: {free / 1e9:.1f} GB free, window of "
                             f"{settings.window} members needs {need / 1e9:.1f} GB (+20%)")
    return f"scratch {scratch}: {free / 1e9:.1f} GB free for {need / 1e9:.2f} GB"


def check_gpu(settings: Settings) -> str:
    fc = settings.forecast
    if not fc.device.startswith("cuda"):
        return f"device {fc.device}: no GPU needed"
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = fc.gpus or 1
    if found < want:
        raise PreflightError(f"forecast.device is {fc.device} but {found} GPU(s) are visible "
                             f"(config wants {want})")
    return f"{found} GPU(s) visible"


def check_climatology(settings: Settings) -> str:
    """The quest's files for this cycle's two weeks exist (or the quest's server can be
    asked), and the cycle is a quest issue date."""
    from ensflow.adapters import quest_climatology
    from ensflow.science import quest

    q = settings.quest
    if not q.enabled:
        return "quest off"
    quest.check_issue_date(settings.cycle, q.allow_any_issue_date)
    if settings.synthetic:
        return "synthetic climatology (made by the demo)"
    if q.climatology == quest_climatology.AIWQ:
        if not os.environ.get(q.password_env):
            raise PreflightError(f"climatology from the quest's server needs ${q.password_env}")
        return "climatology from the quest's server"
    issue = quest.issue_date(settings.cycle)
    storage = Storage.from_settings(settings)
    needed = quest_climatology.needed(issue, q.variables)
    urls = [quest_climatology.source_url(q.climatology, v, valid) for v, _, valid in needed]
    missing = [url for url in urls if storage.stat(url) is None]
    if missing:
        raise PreflightError(f"climatology files not found: {', '.join(missing)}")
    # Opened and checked as the products will (valid date, grid, quantiles, units), now.
    Path(settings.scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.scratch, prefix=".preflight-") as tmp:
        for var, _, valid in needed:
            quest_climatology.fetch_checked(
                storage, q.climatology, var, valid, Path(tmp) / quest_climatology.filename(var, valid),
                q.password_env, q.climatology_units[var])
    return f"climatology: {len(needed)} files under {q.climatology}, opened and checked"


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
    failed: dict[str, str] = {}  # message -> the check that said it first
    for name, check in checks.items():
        try:
            results[name] = check(settings)
            log.info("preflight %s: ok (%s)", name, results[name])
        except Exception as exc:  # every check reports, whatever the one before it hit
            text = str(exc) if isinstance(exc, EnsflowError) else f"{type(exc).__name__}: {exc}"
            if text in failed:  # it needs what an earlier check found broken
                text = f"not checked ({failed[text]} failed)"
            failed.setdefault(text, name)
            problems.append(f"{name}: {text}")
            log.error("preflight %s: %s", name, text)
    if problems:
        raise PreflightError(f"preflight of {stage} failed:\n  " + "\n  ".join(problems))
    receipts.write(out, {"cycle": settings.cycle, "stage": stage, "checks": results})
