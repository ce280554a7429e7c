"""GRIB writing throughput at N320: ensflow's encoder against plain eccodes, one core, same run.

A member writes ~13,000 N320 fields (132 steps × ~100 fields); today that costs ~110 s of
one core with eccodes. Prints fields/s for both and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import eccodes
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.grib_encode import GribEncoder, packed_grid_template

FIELDS_PER_MEMBER = 132 * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", default="N320")
    parser.add_argument("--fields", type=int, default=300)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, like the baseline

    rng = np.random.default_rng(0)
    base = dt.datetime(2025, 11, 27)
    specs = [FieldSpec("2t", "2t", "sfc"), FieldSpec("msl", "msl", "sfc"),
             FieldSpec("z_500", "z", "pl", 500), FieldSpec("tp", "tp", "sfc", accumulated=True)]
    enc = GribEncoder(args.grid, base, member=1, ensemble_size=50)
    t0 = time.perf_counter()
    for s in specs:
        enc._template(s)
    setup = time.perf_counter() - t0
    n = enc._templates["2t"].npoints
    fields = [rng.normal(280, 10, n) for _ in range(8)]

    with tempfile.TemporaryDirectory() as tmp:
        # ensflow: eccodes header per message, numpy packing
        t0 = time.perf_counter()
        with open(Path(tmp) / "ours.grib", "wb") as f:
            for i in range(args.fields):
                enc.write(f, specs[i % len(specs)], 6 * (i // len(specs) + 1), fields[i % 8])
        ours = args.fields / (time.perf_counter() - t0)

        # baseline: eccodes sets values and packs (the usual GRIB writer loop)
        h = eccodes.codes_new_from_message(packed_grid_template(args.grid, 16))
        eccodes.codes_set(h, "shortName", "2t")
        t0 = time.perf_counter()
        with open(Path(tmp) / "eccodes.grib", "wb") as f:
            for i in range(args.fields):
                eccodes.codes_set(h, "step", 6 * (i // len(specs) + 1))
                eccodes.codes_set_values(h, fields[i % 8])
                f.write(eccodes.codes_get_message(h))
        theirs = args.fields / (time.perf_counter() - t0)
        eccodes.codes_release(h)
        size = (Path(tmp) / "ours.grib").stat().st_size / args.fields

    print(f"grid {args.grid}: {n} points, {args.fields} fields, {size / 1e6:.2f} MB/field, one core")
    print(f"  template setup (once per field and member): {setup:.2f}s for {len(specs)} fields")
    print(f"  ensflow encoder : {ours:8.1f} fields/s  -> a member ({FIELDS_PER_MEMBER} fields) "
          f"{FIELDS_PER_MEMBER / ours:6.1f}s")
    print(f"  eccodes baseline: {theirs:8.1f} fields/s  -> a member ({FIELDS_PER_MEMBER} fields) "
          f"{FIELDS_PER_MEMBER / theirs:6.1f}s")
    print(f"  ratio: {ours / theirs:.1f}x")
    print(f"result: encode_rate {ours:.1f} fields/s baseline {theirs:.1f} ratio {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
