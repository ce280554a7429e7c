"""Encoding one runner state at N320 as the forecast writer does: fields given as anemoi
yields them on a CPU device (columns of the step's (values, variables) output), copied to
contiguous arrays first (ensflow) against encoded straight from the strided columns
(baseline), one core, same run.

anemoi-inference's runner puts `output[:, j]` in the state for each variable and
`prepare_output_state` calls `.cpu().numpy()` on it: off a GPU that is a fresh contiguous
host array, on a CPU device a view whose every element lies in another cache line. The
encoder makes several passes over a field (finite check, min, max, scaling), each of which
then walks the whole state's memory. Outputs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.grib_encode import GribEncoder

# AIFS ENS v1's outputs: 6 upper-air variables on 13 levels and 11 surface fields.
LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
SURFACE = ("10u", "10v", "2d", "2t", "msl", "skt", "sp", "tcw", "stl1", "stl2", "tp")


def output_specs() -> list[FieldSpec]:
    upper = [FieldSpec(f"{p}_{lev}", p, "pl", lev) for p in ("q", "t", "u", "v", "w", "z")
             for lev in LEVELS]
    # the encoder's cost does not depend on the parameter: surface fields share a template
    surface = [FieldSpec(name, "2t", "sfc") for name in SURFACE]
    return upper + surface


def encode_state(enc: GribEncoder, specs: list[FieldSpec], columns: list[np.ndarray],
                 contiguous: bool) -> bytes:
    out = io.BytesIO()
    for spec, values in zip(specs, columns, strict=True):
        enc.write(out, spec, 6, np.ascontiguousarray(values) if contiguous else values)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="N320")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the writer thread: one core

    specs = output_specs()
    enc = GribEncoder(args.grid, dt.datetime(2025, 11, 27), member=1, ensemble_size=51)
    for s in specs:
        enc._template(s)
    n = enc._templates[specs[0].name].npoints
    rng = np.random.default_rng(0)
    output = rng.normal(280.0, 10.0, (n, len(specs))).astype(np.float32)  # (values, variables)
    columns = [output[:, j] for j in range(len(specs))]
    assert not columns[0].flags.c_contiguous

    times: dict[bool, list[float]] = {True: [], False: []}
    messages: dict[bool, bytes] = {}
    for _ in range(args.runs):
        for contiguous in (True, False):
            t0 = time.perf_counter()
            messages[contiguous] = encode_state(enc, specs, columns, contiguous)
            times[contiguous].append(time.perf_counter() - t0)
    same = messages[True] == messages[False]
    ours, base = statistics.median(times[True]), statistics.median(times[False])
    print(f"one state: {len(specs)} fields on {args.grid} ({n} points), float32 columns of a "
          f"(values, variables) array, one core, {args.runs} runs each")
    print(f"  copied to contiguous first (ensflow): {ours:.3f}s "
          f"(range {min(times[True]):.3f}-{max(times[True]):.3f})")
    print(f"  strided columns as given (baseline) : {base:.3f}s "
          f"(range {min(times[False]):.3f}-{max(times[False]):.3f})")
    print(f"  same bytes: {same}; a member's 132 states: {132 * ours:.0f}s against "
          f"{132 * base:.0f}s of the writer's core")
    if not same:
        raise SystemExit("the two encodings differ")
    print(f"result: state_encode {ours:.3f} s baseline {base:.3f} ratio {ours / base:.3f}")


if __name__ == "__main__":
    main()
