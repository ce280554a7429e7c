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
    """Each step lasts `step_seconds` of wall time, all but the tensor copy spent asleep."""

    def __init__(self, raw_metadata: dict, supporting_arrays: dict, step_seconds: float) -> None:
        super().__init__(raw_metadata, supporting_arrays)
        self.step_seconds = step_seconds

    def _predict_step(self, input_tensor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        outputs = super()._predict_step(input_tensor)
        time.sleep(max(0.0, self.step_seconds - (time.perf_counter() - t0)))
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
