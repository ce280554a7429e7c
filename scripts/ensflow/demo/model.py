"""A tiny AIFS-ENS stand-in: persistence plus seeded noise, saved as a real anemoi checkpoint.

Real weights cannot be fetched here, so the demo and tests run anemoi-inference's own
runner on this model. The class must stay importable: torch unpickles it by name.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anemoi.inference.testing.mock_model import SimpleMockModel

from ensflow.adapters.checkpoint_info import DEMO_MODEL_CLASS

# The AIFS ENS v1 variables and their roles (ECMWF, "Implementation of AIFS ENS v1";
# earth2studio models/px/aifsens.py lists the checkpoint's dataset.variables): 6 params on
# 13 pressure levels, 10 surface and soil prognostics, 4 constant forcings, 9 computed
# forcings, tp as the one diagnostic.
LEVELS = [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000]
PRESSURE_PARAMS = ["q", "t", "u", "v", "w", "z"]
SURFACE = ["10u", "10v", "2d", "2t", "msl", "skt", "sp", "tcw", "stl1", "stl2"]
PROGNOSTIC = [f"{p}_{lev}" for p in PRESSURE_PARAMS for lev in LEVELS] + SURFACE
FORCING = ["lsm", "sdor", "slor", "z"]
COMPUTED = ["cos_julian_day", "cos_latitude", "cos_local_time", "cos_longitude", "insolation",
            "sin_julian_day", "sin_latitude", "sin_local_time", "sin_longitude"]
TIME_CONSTANT_COMPUTED = {"cos_latitude", "cos_longitude", "sin_latitude", "sin_longitude"}
DIAGNOSTIC = ["tp"]
DEMO_NOTE = "ensflow demo model (persistence + seeded noise), not a forecast"


def _mars(name: str) -> dict[str, Any]:
    """A `mars` block as anemoi-datasets writes it for an ERA5/IFS-trained dataset."""
    base = {"class": "od", "expver": "0001", "stream": "oper", "type": "an"}
    if "_" in name and name.rsplit("_", 1)[1].isdigit():
        param, level = name.rsplit("_", 1)
        return {**base, "param": param, "levtype": "pl", "levelist": int(level)}
    return {**base, "param": name, "levtype": "sfc"}


def demo_metadata(npoints: int, grid: str) -> dict[str, Any]:
    """Checkpoint metadata in the form anemoi-training/anemoi-datasets write: variables and
    their roles, `variables_metadata` with `mars` blocks, `process: accumulation` with its
    `period` for tp, `constant_in_time` for the constants, `computed_forcing` for what the
    runner computes. Nothing ensflow-private: the demo is known by its model class."""
    variables = PROGNOSTIC + FORCING + COMPUTED + DIAGNOSTIC
    n_prog, n_force = len(PROGNOSTIC), len(FORCING) + len(COMPUTED)
    n_in = n_prog + n_force
    forcing_idx = list(range(n_prog, n_in))
    diag_idx = list(range(n_in, len(variables)))
    vmeta: dict[str, Any] = {}
    for name in PROGNOSTIC + FORCING + DIAGNOSTIC:
        vmeta[name] = {"mars": _mars(name)}
    for name in FORCING:
        vmeta[name]["constant_in_time"] = True
    vmeta["tp"].update({"process": "accumulation", "period": ["0:00:00", "6h"]})
    vmeta["tp"]["mars"]["type"] = "fc"
    for name in COMPUTED:
        vmeta[name] = {"computed_forcing": True,
                       "constant_in_time": name in TIME_CONSTANT_COMPUTED}
    return {
        "version": "1.0",
        "description": DEMO_NOTE,
        "config": {
            "training": {"multistep_input": 2, "precision": "32"},
            "data": {"timestep": "6h", "forcing": FORCING + COMPUTED, "diagnostic": DIAGNOSTIC},
            "model": {"model": {"_target_": DEMO_MODEL_CLASS}},
        },
        "data_indices": {
            "data": {
                "input": {"full": list(range(n_in)), "forcing": forcing_idx,
                          "diagnostic": diag_idx, "prognostic": list(range(n_prog))},
                "output": {"full": list(range(n_prog)) + diag_idx},
            },
            "model": {
                "input": {"full": list(range(n_in)), "forcing": forcing_idx,
                          "prognostic": list(range(n_prog))},
                "output": {"full": list(range(n_prog + len(DIAGNOSTIC))),
                           "prognostic": list(range(n_prog))},
            },
        },
        "dataset": {
            "variables": variables,
            "shape": [365, len(variables), 1, npoints],
            "variables_metadata": vmeta,
            "data_request": {"grid": grid, "area": [90, 0, -90, 360]},
        },
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


class DemoEnsembleModel(SimpleMockModel):
    """Each step: the last state plus noise drawn from torch's generator (seeded per member)."""

    def _predict_step(self, input_tensor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = super()._predict_step(input_tensor)
        for dataset, meta in self.metadata.items():
            out = outputs[dataset]
            prog = meta.prognostic_output_indices
            if prog:
                x = out[..., prog]
                out[..., prog] = x + torch.randn_like(x) * (1e-3 * x.abs() + 1e-2)
            diag = [i for i in range(out.shape[-1]) if i not in set(prog)]
            if diag:  # a precipitation-like amount per step, metres, never negative
                out[..., diag] = 1e-3 * torch.randn_like(out[..., diag]).abs()
        return outputs


def grid_coordinates(grid: str) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of a global grid, read from a mir-made template."""
    import eccodes

    from ensflow.adapters.grib_encode import grid_template

    h = eccodes.codes_new_from_message(grid_template(grid))
    try:
        return (np.asarray(eccodes.codes_get_array(h, "latitudes")),
                np.asarray(eccodes.codes_get_array(h, "longitudes")))
    finally:
        eccodes.codes_release(h)


def save_demo_checkpoint(path: str | Path, grid: str = "O48") -> Path:
    """Write a checkpoint that anemoi-inference's runner loads like a real one."""
    from anemoi.utils.checkpoints import save_metadata

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lats, lons = grid_coordinates(grid)
    metadata = demo_metadata(lats.size, grid)
    arrays = {"latitudes": lats, "longitudes": lons}
    model = DemoEnsembleModel(metadata, arrays)
    tmp = path.with_name(path.name + ".part")
    torch.save(model, tmp)
    save_metadata(tmp, metadata, supporting_arrays=arrays)
    tmp.replace(path)
    return path
