"""AI Weather Quest post-processing at operational shape: 50 members at N320 (synthetic,
made here) → 1.5° fields → aifs_ens_1p5 store → weekly quintile probabilities → six
checked submission files.

Baseline in the same run: mir GRIB-to-GRIB regrid of the same fields one by one (its
per-field rate, measured on one member's fields). Two figures: the regrid alone, and end
to end, where the baseline is the same run with its regrid at mir's one-by-one rate.
Not timed: making the synthetic N320 fields (the model's work) and the demo's synthetic
climatology (operations download the quest's own).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--grid", default="N320")
    args = parser.parse_args()

    import eccodes
    import xarray as xr

    from ensflow.adapters.checkpoint_info import FieldSpec
    from ensflow.adapters.grib_encode import GribEncoder
    from ensflow.config import load
    from ensflow.demo.model import grid_coordinates
    from ensflow.science import quest
    from ensflow.stages import quest_stage

    tmp = Path(tempfile.mkdtemp(prefix="bench_quest_"))
    settings = load(REPO / "config/config.yaml", {
        "members": f"1-{args.members}", "quest": {"store": f"file://{tmp}/q.icechunk"}})
    variables = quest_stage.variables(settings)
    steps = quest.needed_steps(variables)
    specs = {v.param: FieldSpec(v.param, v.param, "sfc", accumulated=v.accumulated) for v in variables}
    lats, lons = grid_coordinates(args.grid)
    base = {"2t": 278 + 30 * np.cos(np.deg2rad(lats)) ** 2 - 15,
            "msl": 101_000 + 1500 * np.sin(np.deg2rad(2 * lons)) * np.cos(np.deg2rad(lats)),
            "tp": 1e-3 * (1 + np.sin(np.deg2rad(3 * lons + lats)))}

    def field(param: str, member: int, step: int) -> np.ndarray:
        if param == "tp":  # accumulation grows with the step
            return base["tp"] * (1 + 0.01 * member) * step / 6
        return base[param] + 0.3 * member * np.sin(np.deg2rad(lons + 7 * step))

    npoints = lats.size
    print(f"{args.members} members x {len(steps)} steps at {args.grid} ({npoints} points): "
          f"{sum(len([s for s in steps if s in quest.needed_steps([v])]) for v in variables)} "
          "fields per member", flush=True)
    encoder = GribEncoder(args.grid, quest.issue_date(settings.cycle), 1, 50)

    # ---- ensflow: in-forecast regrid with mir's weights, store, products
    # (making the synthetic N320 fields is the model's work: it is not timed)
    t_all = time.perf_counter()
    t_made = 0.0
    quest_stage.setup(settings, tmp / "setup.json")
    n_fields = 0
    t_regrid = 0.0
    regridders = {}
    forks = []
    for m in range(1, args.members + 1):
        r = regridders.setdefault("r", quest.InForecastRegridder(variables, settings.quest.methods))
        r.fields = {v.name: np.full((len(steps), 121, 240), np.nan, np.float32) for v in variables}
        for step in steps:
            t0 = time.perf_counter()
            fields = {p: field(p, m, step) for p in specs}
            t1 = time.perf_counter()
            r.add(encoder, specs, step, fields)
            t_regrid += time.perf_counter() - t1
            t_made += t1 - t0
            n_fields += sum(step in r.own_steps[v.name] for v in variables)
        r.save(tmp / f"m{m}.npz", settings.cycle, m)
        forks.append(tmp / f"m{m}.fork")
        quest_stage.write_member(settings, m, tmp / f"m{m}.npz", tmp / "setup.json", forks[-1])
    quest_stage.publish(settings, tmp / "setup.json", forks, tmp / "published.json")
    clim_files = [tmp / "clim" / n for n in quest_stage.climatology_names(settings)]
    t0 = time.perf_counter()
    quest_stage.synthetic_climatology(settings, tmp / "published.json", clim_files)
    t_made += time.perf_counter() - t0
    outputs = [str(tmp / "out" / n) for n in quest_stage.submission_names(settings)]
    quest_stage.products(settings, tmp / "published.json", tmp / "clim", outputs,
                         tmp / "anomalies.npz", tmp / "sanity.json")
    wall = time.perf_counter() - t_all - t_made
    files = sorted((tmp / "out").glob("*.nc"))
    assert len(files) == 6 and all(xr.open_dataarray(f).shape == (5, 121, 240) for f in files)

    # ---- baseline: mir GRIB-to-GRIB, one field at a time (one member's fields)
    from ensflow.adapters.regrid import regrid_message

    messages = [encoder.encode(specs[v.param], s, field(v.param, 1, s))
                for v in variables for s in quest.needed_steps([v])]
    t0 = time.perf_counter()
    for msg in messages:
        var = next(v for v in variables if v.param == eccodes_short(eccodes, msg))
        out = regrid_message(msg, quest.QUEST_GRID, quest.method_for(var, settings.quest.methods))
        h = eccodes.codes_new_from_message(out)
        eccodes.codes_get_values(h)
        eccodes.codes_release(h)
    base_rate = len(messages) / (time.perf_counter() - t0)
    ours_rate = n_fields / t_regrid
    base_wall = wall - t_regrid + n_fields / base_rate
    print(f"ensflow post-processing: {wall:.1f}s wall for {args.members} members "
          f"({n_fields} fields regridded, store, weekly quintiles, 6 files; the synthetic "
          "fields and climatology not counted)")
    print(f"  regrid alone: {ours_rate:.0f} fields/s (mir's weights as one sparse product per "
          f"field) vs mir GRIB-to-GRIB one by one {base_rate:.1f} fields/s (measured on "
          f"{len(messages)} fields): {ours_rate / base_rate:.1f}x")
    print(f"  end to end: {wall:.1f}s vs {base_wall:.1f}s with the baseline's regrid "
          f"({t_regrid:.1f}s -> {n_fields / base_rate:.1f}s): {base_wall / wall:.2f}x faster")
    print(f"result: postprocess_wall {wall:.1f} s baseline {base_wall:.1f} "
          f"ratio {wall / base_wall:.3f}")


def eccodes_short(eccodes, msg: bytes) -> str:
    h = eccodes.codes_new_from_message(msg)
    try:
        return eccodes.codes_get(h, "shortName")
    finally:
        eccodes.codes_release(h)


if __name__ == "__main__":
    main()
