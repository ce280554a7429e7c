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
from typing import Any

import torch
from anemoi.inference.testing.mock_model import SimpleMockModel


class GpuPacedModel(SimpleMockModel):
    """Each call sleeps `sleep_seconds`: the GPU's share of a step, with the CPU free.

    Its outputs are anemoi's mock persistence, computed by SimpleMockModel at a forecast's
    first call (`fcstep` 0) and handed back unchanged after: persistence is a fixed point
    (the prognostics it copies forward are the ones it gave, the diagnostics are ones), so
    later calls would compute the same tensor with ~0.5 s of memory-bound CPU work at N320
    that a GPU does in its own memory. Every call lasts `sleep_seconds`, the first one with
    that computation inside it. The runner's own tensor work around the model
    (copying prognostics into the next input, forcings) stays on the CPU; the bench
    subtracts it from the sleep, so an undisturbed step lasts the step time and whatever
    ensflow does beside the runner shows on top of it.
    """

    def __init__(self, raw_metadata: dict, supporting_arrays: dict, sleep_seconds: float) -> None:
        super().__init__(raw_metadata, supporting_arrays)
        self.sleep_seconds = sleep_seconds
        self._outputs: Any = None

    def predict_step(self, input_tensor: Any, date: Any = None, step: Any = None,
                     fcstep: int = 0, **kwargs: Any) -> Any:
        started = time.perf_counter()
        if fcstep == 0 or self._outputs is None:
            self._outputs = super().predict_step(input_tensor, date=date, step=step, **kwargs)
        # every call lasts the GPU time, the first one too: its persistence is the GPU's work
        time.sleep(max(0.0, self.sleep_seconds - (time.perf_counter() - started)))
        return self._outputs


def save_paced_checkpoint(path: str | Path, grid: str, sleep_seconds: float,
                          model: type[SimpleMockModel] = GpuPacedModel) -> Path:
    """A checkpoint anemoi-inference loads like a real one: AIFS ENS v1 variables on `grid`
    (`model` SimpleMockModel: anemoi's own mock, to compare the stand-in with)."""
    from anemoi.utils.checkpoints import save_metadata

    from ensflow.demo.model import demo_metadata, grid_coordinates

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lats, lons = grid_coordinates(grid)
    metadata = demo_metadata(lats.size, grid)
    arrays = {"latitudes": lats, "longitudes": lons}
    tmp = path.with_name(path.name + ".part")
    args = (sleep_seconds,) if model is GpuPacedModel else ()
    torch.save(model(metadata, arrays, *args), tmp)
    save_metadata(tmp, metadata, supporting_arrays=arrays)
    tmp.replace(path)
    return path


def _input_state(checkpoint: str | Path, seed: int) -> dict:
    import datetime as dt

    import numpy as np

    from ensflow.adapters import checkpoint_info

    info = checkpoint_info.read(str(checkpoint))
    rng = np.random.default_rng(seed)
    return {"date": dt.datetime(2025, 11, 27), "fields": {
        f.name: rng.normal(280.0, 5.0, (2, info.npoints)).astype(np.float32)
        for f in info.input_fields}}


def _runner(checkpoint: str | Path) -> Any:
    from anemoi.inference.runners.simple import SimpleRunner

    return SimpleRunner(str(checkpoint), device="cpu", precision="32", seed=1)


def runner_step_seconds(checkpoint: str | Path, steps: int = 8, threads: int = 1) -> float:
    """Median wall time of a runner step on `checkpoint` with nothing consuming the states,
    on as many torch threads as a forecast job gets (1 in profiles/demo)."""
    import statistics

    torch.set_num_threads(threads)
    runner = _runner(checkpoint)
    times, t = [], time.perf_counter()
    for _ in runner.run(input_states=_input_state(checkpoint, 0), lead_time=6 * steps):
        now = time.perf_counter()
        times.append(now - t)
        t = now
    return statistics.median(times[1:])


def check_persistence(paced: str | Path, grid: str, steps: int = 3) -> int:
    """The stand-in gives what SimpleMockModel computes at every step, for two members in
    turn on one runner (as in a model process); returns the number of fields compared."""
    import numpy as np

    mock = save_paced_checkpoint(Path(paced).with_name("mock.ckpt"), grid, 0.0,
                                 SimpleMockModel)
    compared = 0
    runners = _runner(paced), _runner(mock)
    for seed in (1, 2):
        state = _input_state(paced, seed)
        for got, want in zip(*(r.run(input_states=state, lead_time=6 * steps) for r in runners),
                             strict=True):
            for name, values in want["fields"].items():
                if not np.array_equal(np.asarray(got["fields"][name]), np.asarray(values)):
                    raise SystemExit(f"stand-in differs from SimpleMockModel: {name} at "
                                     f"{want['date']} (state {seed})")
                compared += 1
    return compared
