"""Stage: the embedded demo's synthetic inputs (open-data mirror, tiny checkpoint)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import checkpoint_info, demo_data, demo_model, receipts
from .config import Settings
from .cycle import cycle_datetime
from .input_state import input_dates


def make_checkpoint(settings: Settings, path: str | Path) -> None:
    demo_model.save_demo_checkpoint(path, settings.raw["demo"]["checkpoint_grid"])


def make_mirror(settings: Settings, checkpoint: str | Path, record_path: str | Path,
                extra: list[tuple[dt.datetime, int]] | None = None) -> None:
    """Open-data objects for the input dates (step 0), for every field the checkpoint reads."""
    cfg = settings.raw
    info = checkpoint_info.read(str(checkpoint))
    od = cfg["opendata"]
    bases = [(d, 0) for d in input_dates(cycle_datetime(settings.cycle), info.timestep_hours)]
    paths = demo_data.write_mirror(
        od["root"], bases + (extra or []), demo_data.opendata_params(info.input_fields),
        cfg["demo"]["perturbed_members"], cfg["demo"]["grid_step"],
        model=od["model"], resol=od["resol"], stream=od["stream"])
    receipts.write(record_path, {"cycle": settings.cycle, "synthetic": True,
                                 "objects": [str(p) for p in paths]})

