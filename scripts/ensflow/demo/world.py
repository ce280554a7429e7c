"""Stage: the embedded demo's synthetic inputs (open-data mirror, tiny checkpoint)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ensflow import receipts
from ensflow.adapters import checkpoint_info, opendata_catalogue, opendata_requests
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime
from ensflow.demo import data as demo_data
from ensflow.demo import model as demo_model
from ensflow.science import cgan_plan
from ensflow.science.input_state import input_dates


def make_checkpoint(settings: Settings, path: str | Path) -> None:
    demo_model.save_demo_checkpoint(path, settings.demo.checkpoint_grid)


def mirror_objects(settings: Settings, info: checkpoint_info.CheckpointInfo
                   ) -> dict[tuple[dt.datetime, int, str], demo_data.ObjectContents]:
    """What the demo cycle reads, placed where ECMWF publishes it: the members' input fields
    in enfo (control and perturbed), the constants in the HRES stream, cGAN fields at its steps."""
    base = cycle_datetime(settings.cycle)
    catalogue = opendata_catalogue.load()
    objects: dict[tuple[dt.datetime, int, str], demo_data.ObjectContents] = {}
    for date in input_dates(base, info.timestep_hours):
        for member in range(settings.demo.perturbed_members + 1):
            for r in opendata_requests.for_member(info, date, member, catalogue):
                demo_data.add(objects, date, r.step, r.product, r.field)
    if settings.cgan.enabled:
        plan = cgan_plan.plan_from(settings)
        for var in plan.variables:
            for step in plan.fetch_steps(var):
                for member in plan.members:
                    demo_data.add(objects, base, step, plan.product(member), var.field)
    return objects


def make_mirror(settings: Settings, checkpoint: str | Path, record_path: str | Path) -> None:
    """A synthetic open-data mirror with everything the demo cycle reads."""
    info = checkpoint_info.read(str(checkpoint))
    paths = demo_data.write_mirror(OpenDataLayout.from_settings(settings.opendata),
                                   mirror_objects(settings, info),
                                   settings.demo.grid_step)
    receipts.write(record_path, {"cycle": settings.cycle, "synthetic": True,
                                 "objects": [str(p) for p in paths]})
