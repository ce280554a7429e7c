"""The GPU-paced stand-in: a model at AIFS ENS v1's operational shape whose step takes a set
GPU time, during which this process's CPU is free (it sleeps, as a CUDA kernel lets it).

Outputs are anemoi's mock persistence (prognostics copied forward, the diagnostic tp one
per step), so every CPU cost around the model (runner, GRIB encoding, totals, the quest
regrid, uploads) is the real one at N320. The class lives here, not in ensflow, so that the
landed design's code unpickles the same checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from anemoi.inference.testing.mock_model import SimpleMockModel


class GpuPacedModel(SimpleMockModel):
    """Each call sleeps `sleep_seconds` after anemoi's mock persistence: the GPU's share of a
    step with the CPU free. The bench sets it to the step time less what the runner's own
    work per step takes on these cores (anemoi's tensor copies and forcings, ~0.6 s at N320,
    work a GPU does), measured in the same run with nothing consuming the states; so a step
    lasts the step time, and whatever ensflow does between steps shows on top of it."""

    def __init__(self, raw_metadata: dict, supporting_arrays: dict, sleep_seconds: float) -> None:
        super().__init__(raw_metadata, supporting_arrays)
        self.sleep_seconds = sleep_seconds

    def _predict_step(self, input_tensor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = super()._predict_step(input_tensor)
        time.sleep(self.sleep_seconds)
        return outputs


def save_paced_checkpoint(path: str | Path, grid: str, sleep_seconds: float) -> Path:
    """A checkpoint anemoi-inference loads like a real one: AIFS ENS v1 variables on `grid`."""
    from anemoi.utils.checkpoints import save_metadata

    from ensflow.demo.model import demo_metadata, grid_coordinates

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lats, lons = grid_coordinates(grid)
    metadata = demo_metadata(lats.size, grid)
    arrays = {"latitudes": lats, "longitudes": lons}
    tmp = path.with_name(path.name + ".part")
    torch.save(GpuPacedModel(metadata, arrays, sleep_seconds), tmp)
    save_metadata(tmp, metadata, supporting_arrays=arrays)
    tmp.replace(path)
    return path


def runner_step_seconds(checkpoint: str | Path, steps: int = 8, threads: int = 1) -> float:
    """Median wall time of a runner step on `checkpoint` with nothing consuming the states,
    on as many torch threads as a forecast job gets (1 in profiles/demo)."""
    import datetime as dt
    import statistics

    import numpy as np
    from anemoi.inference.runners.simple import SimpleRunner

    from ensflow.adapters import checkpoint_info

    torch.set_num_threads(threads)

    info = checkpoint_info.read(str(checkpoint))
    state = {"date": dt.datetime(2025, 11, 27), "fields": {
        f.name: np.full((2, info.npoints), 280.0, np.float32) for f in info.input_fields}}
    runner = SimpleRunner(str(checkpoint), device="cpu", precision="32", seed=1)
    times, t = [], time.perf_counter()
    for _ in runner.run(input_states=state, lead_time=6 * steps):
        now = time.perf_counter()
        times.append(now - t)
        t = now
    return statistics.median(times[1:])
