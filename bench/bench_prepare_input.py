"""prepare_input for one member at N320: CPU seconds per member, ensflow against mir per field.

A synthetic open-data mirror in ECMWF's layout at 0.25° (CCSDS-packed, as open data is)
holds one member's inputs and the HRES constants at both input dates. ensflow's
prepare_input decodes each message and applies mir's cached 0.25°→N320 weights to the
values; the baseline, in the same run, is the same stage with each field regridded by mir
GRIB to GRIB and decoded again (the landed path). CPU time of the process (all threads),
medians over --runs after one warm-up each (mir's weights are computed once per machine).
The two input states are compared field by field against the packing of mir's output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


class MirPerField:
    """The landed regrid: mir writes each field on the target grid as GRIB, decoded again."""

    def __init__(self, grid: str, interpolation: str = "linear") -> None:
        self.grid, self.interpolation = grid, interpolation

    def values(self, buf: bytes, what: str) -> np.ndarray:
        from ensflow.adapters.grib_decode import decode
        from ensflow.adapters.regrid import regrid_message

        return decode(regrid_message(buf, self.grid, self.interpolation), what)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="N320")
    ap.add_argument("--source-step", type=float, default=0.25)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    from ensflow.adapters import regrid, safe_pickle
    from ensflow.config import load
    from ensflow.demo import world
    from ensflow.demo.model import save_demo_checkpoint
    from ensflow.stages.inputs import prepare_input

    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    ckpt = save_demo_checkpoint(tmp / "n320.ckpt", args.grid)
    settings = load(REPO / "config/config.yaml", {
        "members": "1", "checkpoint": str(ckpt), "bucket": f"file://{tmp}/bucket",
        "scratch": str(tmp / "scratch"), "cgan": {"enabled": False},
        "opendata": {"root": f"file://{tmp}/opendata"},
        "demo": {"grid_step": args.source_step, "perturbed_members": 1}})
    t0 = time.perf_counter()
    world.make_mirror(settings, ckpt, tmp / "mirror.json")
    print(f"mirror at {args.source_step}° made in {time.perf_counter() - t0:.0f}s (not timed)",
          flush=True)

    designs = {"ensflow": regrid.WeightsRegridder, "mir per field": MirPerField}
    cpu: dict[str, list[float]] = {name: [] for name in designs}
    states = {}
    for run in range(args.runs + 1):
        for name, cls in designs.items():
            regrid_cls = regrid.WeightsRegridder
            regrid.WeightsRegridder = cls  # type: ignore[misc]  (what input_state builds)
            try:
                bucket = f"file://{tmp}/bucket-{name.replace(' ', '-')}-{run}"
                s = load(REPO / "config/config.yaml", {**settings.config, "bucket": bucket})
                c0 = time.process_time()
                prepare_input(s, 1, tmp / f"receipt-{run}.json")
                used = time.process_time() - c0
            finally:
                regrid.WeightsRegridder = regrid_cls  # type: ignore[misc]
            if run:  # run 0 warms mir's weight cache and the imports
                cpu[name].append(used)
            pkl = Path(bucket.removeprefix("file://")) / settings.cycle
            states[name] = safe_pickle.loads(next(pkl.rglob("*.pkl")).read_bytes(), "state")
            print(f"run {run} {name:14s}: {used:.2f}s CPU{'' if run else ' (warm-up)'}",
                  flush=True)

    ours, base = states["ensflow"]["fields"], states["mir per field"]["fields"]
    worst = max(float(np.max(np.abs(ours[k] - base[k])) / max(np.ptp(base[k]), 1e-12))
                for k in base)
    print(f"input state: {len(base)} fields x 2 dates at {args.grid}; largest difference "
          f"{worst:.2e} of a field's range (16-bit packing step: {2 ** -16:.2e})")
    m_ours, m_base = statistics.median(cpu["ensflow"]), statistics.median(cpu["mir per field"])
    print(f"prepare_input CPU per member: ensflow {m_ours:.2f}s (range {min(cpu['ensflow']):.2f}-"
          f"{max(cpu['ensflow']):.2f}), mir per field {m_base:.2f}s (range "
          f"{min(cpu['mir per field']):.2f}-{max(cpu['mir per field']):.2f})")
    print(f"result: prepare_input_cpu {m_ours:.2f} s baseline {m_base:.2f} "
          f"ratio {m_ours / m_base:.3f}")


if __name__ == "__main__":
    main()
