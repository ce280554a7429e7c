"""Stage: AIFS-ENS inference for one member with anemoi-inference, written as GRIB windows."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ensflow.adapters import checkpoint_info
from ensflow.adapters.grib_encode import ENSEMBLE_SIZE, GribEncoder
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime, member_id
from ensflow.errors import ForecastError
from ensflow.layout import forecast_windows
from ensflow.science import input_state, quest

log = logging.getLogger(__name__)


def member_seed(settings: Settings, member: int) -> int:
    """Distinct, reproducible randomness per member."""
    return int(settings.forecast.seed_base) + member


def run_member(settings: Settings, member: int, input_pkl: str | Path,
               outputs: list[str | Path], quest_out: str | Path | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Run one member to the lead time and write one GRIB file per window, in order.

    With `quest_out`, the AI Weather Quest fields are regridded to 1.5° here, from the
    states the runner yields, and saved beside the GRIB files.
    """
    fc = settings.forecast
    windows = forecast_windows(fc.lead_time, fc.hours_per_file)
    if len(outputs) != len(windows):
        raise ValueError(f"{len(outputs)} output paths for {len(windows)} windows")
    what = f"member {member_id(member)}"
    info = checkpoint_info.read(settings.checkpoint)
    state = input_state.load(str(input_pkl), info, what)
    base = cycle_datetime(settings.cycle)
    if state["date"] != base:
        raise ForecastError(f"{what}: input state is for {state['date']:%Y%m%d_%H%M}, "
                            f"cycle is {settings.cycle}")

    os.environ["ANEMOI_INFERENCE_NUM_CHUNKS"] = str(fc.num_chunks)
    from anemoi.inference.runners.simple import SimpleRunner

    if threads:  # the cores Snakemake gave the job (`threads:`, `--set-threads forecast=N`)
        import torch

        torch.set_num_threads(threads)

    started = time.perf_counter()
    runner = SimpleRunner(settings.checkpoint, device=fc.device, precision=fc.precision,
                          seed=member_seed(settings, member))
    log.info("%s: runner ready on %s (precision %s, seed %d) in %.1fs", what, fc.device,
             fc.precision, member_seed(settings, member), time.perf_counter() - started)

    specs = {s.name: s for s in info.output_fields}
    encoder = GribEncoder(info.grid, base, member, ENSEMBLE_SIZE, fc.bits_per_value)
    totals: dict[str, np.ndarray] = {}
    regridder = None
    if quest_out is not None:
        q = settings.quest
        regridder = quest.InForecastRegridder([quest.VARIABLES[v] for v in q.variables],
                                              q.methods)
    current: BinaryIO | None = None
    window_index = -1
    nsteps = fc.lead_time // info.timestep_hours
    fields_written = 0
    t_step = time.perf_counter()
    try:
        for i, out in enumerate(runner.run(input_states=state, lead_time=fc.lead_time), 1):
            step = round((out["date"] - base) / dt.timedelta(hours=1))
            target = next(k for k, (a, b) in enumerate(windows) if a < step <= b)
            if target != window_index:
                if current:
                    current.close()
                window_index = target
                current = open(outputs[target], "wb")  # noqa: SIM115 (one file per window)
            assert current is not None
            encoded: dict[str, np.ndarray] = {}
            for name, values in out["fields"].items():
                spec = specs.get(name)
                if spec is None:
                    continue
                values = np.asarray(values)
                if spec.accumulated:  # the model gives per-step amounts; GRIB holds 0-step totals
                    totals[name] = totals.get(name, 0.0) + values.astype(np.float64)
                    values = totals[name]
                try:
                    encoder.write(current, spec, step, values)
                except ForecastError as exc:
                    raise ForecastError(f"{what}: {exc}") from None
                encoded[name] = values
                fields_written += 1
            if regridder is not None and regridder.wants(step):
                regridder.add(encoder, specs, step, encoded)
            now = time.perf_counter()
            eta = (now - started) / i * (nsteps - i)
            log.info("%s: step %3d h (%d/%d) %.2fs, ETA %.0fs", what, step, i, nsteps,
                     now - t_step, eta)
            t_step = now
    finally:
        if current:
            current.close()
        encoder.close()
    if window_index != len(windows) - 1:
        raise ForecastError(f"{what}: runner stopped before {fc['lead_time']} h")
    if regridder is not None and quest_out is not None:
        regridder.save(quest_out, settings.cycle, member)
        log.info("%s: quest fields at %d steps on the 1.5° grid -> %s", what,
                 len(regridder.steps), quest_out)
    elapsed = time.perf_counter() - started
    log.info("%s: %d fields in %d files, %.1fs (%.0f fields/s)", what, fields_written,
             len(windows), elapsed, fields_written / elapsed)
    return {"fields": fields_written, "seconds": elapsed, "seed": member_seed(settings, member)}
