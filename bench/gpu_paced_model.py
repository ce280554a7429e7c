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
    """A runner step lasts `step_seconds`: the model sleeps for what the runner's own work
    since the model's last call (anemoi's forcings and tensors, ~0.6 s at N320 on these
    cores) left of it. That is the users' measure too: a member's 330-450 s on an A100 is
    the runner's wall time, its own work included. A first step, or one after a pause,
    lasts `step_seconds` from its own call."""

    def __init__(self, raw_metadata: dict, supporting_arrays: dict, step_seconds: float) -> None:
        super().__init__(raw_metadata, supporting_arrays)
        self.step_seconds = step_seconds

    def _predict_step(self, input_tensor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        called = time.perf_counter()
        outputs = super()._predict_step(input_tensor)
        last = getattr(self, "_last_end", None)
        begun = last if last is not None and called - last < self.step_seconds else called
        time.sleep(max(0.0, self.step_seconds - (time.perf_counter() - begun)))
        self._last_end = time.perf_counter()
        return outputs


def save_paced_checkpoint(path: str | Path, grid: str, step_seconds: float) -> Path:
    """A checkpoint anemoi-inference loads like a real one: AIFS ENS v1 variables on `grid`."""
    from anemoi.utils.checkpoints import save_metadata

    from ensflow.demo.model import demo_metadata, grid_coordinates

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lats, lons = grid_coordinates(grid)
    metadata = demo_metadata(lats.size, grid)
    arrays = {"latitudes": lats, "longitudes": lons}
    tmp = path.with_name(path.name + ".part")
    torch.save(GpuPacedModel(metadata, arrays, step_seconds), tmp)
    save_metadata(tmp, metadata, supporting_arrays=arrays)
    tmp.replace(path)
    return path
