"""Stage: the embedded demo's synthetic inputs (open-data mirror, tiny checkpoint)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import cgan, checkpoint_info, demo_data, demo_model, receipts
from .config import Settings
from .cycle import cycle_datetime
from .input_state import input_dates


def make_checkpoint(settings: Settings, path: str | Path) -> None:
    demo_model.save_demo_checkpoint(path, settings.raw["demo"]["checkpoint_grid"])


def mirror_files(settings: Settings, info: checkpoint_info.CheckpointInfo
                 ) -> dict[tuple[dt.datetime, int], list[tuple[str, str, int | None]]]:
    """Which objects the demo cycle reads: AIFS inputs at step 0, cGAN fields at its steps."""
    base = cycle_datetime(settings.cycle)
    files: dict[tuple[dt.datetime, int], list[tuple[str, str, int | None]]] = {}
    for date in input_dates(base, info.timestep_hours):
        files[(date, 0)] = demo_data.opendata_params(info.input_fields)
    if settings.raw["cgan"]["enabled"]:
        plan = cgan.plan_from(settings)
        for var in plan.variables:
            for step in plan.fetch_steps(var):
                params = files.setdefault((base, step), [])
                if (var.param, var.levtype, var.levelist) not in params:
                    params.append((var.param, var.levtype, var.levelist))
    return files


def make_mirror(settings: Settings, checkpoint: str | Path, record_path: str | Path) -> None:
    """A synthetic open-data mirror with everything the demo cycle reads."""
    cfg = settings.raw
    info = checkpoint_info.read(str(checkpoint))
    od = cfg["opendata"]
    members = max(cfg["demo"]["perturbed_members"],
                  max(cgan.plan_from(settings).members) if cfg["cgan"]["enabled"] else 0)
    paths = demo_data.write_mirror(od["root"], mirror_files(settings, info), members,
                                   cfg["demo"]["grid_step"], model=od["model"],
                                   resol=od["resol"], stream=od["stream"])
    receipts.write(record_path, {"cycle": settings.cycle, "synthetic": True,
                                 "objects": [str(p) for p in paths]})
