"""A cycle of k members on one GPU-paced stand-in: wall time ÷ pure GPU time.

The stand-in (gpu_paced_model.py) has AIFS ENS v1's variables on N320 and steps of a set
GPU time during which the CPU is free. Pure GPU time is k × steps × step time: what the
cycle would take if the GPU never waited. The same cycle runs, in the same invocation, with
this tree's workflow and with the landed design before the model process and the writer
thread (a git worktree of --baseline-rev), both through plain `snakemake --profile
profiles/demo` (2 cores here) on the `aifs` target: preflight, prepare_input, fetch_input,
forecast, upload. The demo inputs (checkpoint, mirror) are made before the clock starts.

Figures: wall ÷ pure GPU time for each design (medians over --runs, with ranges), and the
GPU-busy fraction the run report computes from the forecast jobs' records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(BENCH))
CYCLE = "20251127_0000"
LANDED = "6d896b3"  # the design before the model process and the writer thread


def workflow_copy(source: Path, dest: Path, overlay: dict, checkpoint: Path) -> Path:
    from ensflow.layout import copy_workflow

    copy_workflow(source, dest)
    (dest / "bench.yaml").write_text(yaml.safe_dump(overlay))
    target = dest / overlay["checkpoint"]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, target)
    return dest


def snakemake(work: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work / "scripts"), str(BENCH)])}
    stop = threading.Event()
    sweeper = threading.Thread(target=sweep_uploaded, args=(work, stop), daemon=True)
    sweeper.start()
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), *args,
                               "--profile", "profiles/demo", "--configfile",
                               "config/config.yaml", "bench.yaml"],
                              cwd=work, env=env, capture_output=True, text=True)
    finally:
        stop.set()
        sweeper.join()
    if proc.returncode:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {work}:\n{proc.stderr[-3000:]}")


def sweep_uploaded(work: Path, stop: threading.Event) -> None:
    """A member's 11 files are ~13 GB at N320: once its upload receipt exists, the bench's
    file:// bucket drops them (the upload itself was timed), so a cycle fits on the disk."""
    done: set[Path] = set()
    while not stop.wait(2.0):
        for receipt in (work / "results" / CYCLE / "receipts").glob("forecast_member_*.json"):
            if receipt in done:
                continue
            member = receipt.stem.rsplit("_", 1)[1]
            for obj in (work / "bucket" / CYCLE / "forecasts").glob(f"*member{member}_*.grib"):
                obj.unlink(missing_ok=True)
            done.add(receipt)


def one_cycle(source: Path, dest: Path, overlay: dict, checkpoint: Path) -> tuple[float, float | None]:
    work = workflow_copy(source, dest, overlay, checkpoint)
    snakemake(work, "-q", "--until", "demo_mirror", "checkpoint_record")
    t0 = time.perf_counter()
    snakemake(work, "aifs", "-q")
    wall = time.perf_counter() - t0
    busy = gpu_busy(work)
    shutil.rmtree(work / "bucket", ignore_errors=True)
    shutil.rmtree(work / "scratch", ignore_errors=True)
    return wall, busy


def gpu_busy(work: Path) -> float | None:
    """The run report's figure: inference time in the forecast records ÷ the forecast window
    (None for the landed design, whose records do not say when the model ran)."""
    from ensflow.config import load
    from ensflow.ops.run_record import load_cycle
    from ensflow.ops.timeline import gpu_busy as busy

    settings = load(work / "config/config.yaml",
                    yaml.safe_load((work / "bench.yaml").read_text()))
    found = busy(load_cycle(settings, work).jobs)
    return None if found is None else found["fraction_window"]


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} (range {min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--step-seconds", type=float, default=2.5)
    ap.add_argument("--lead-time", type=int, default=792)
    ap.add_argument("--grid", default="N320")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-rev", default=LANDED)
    ap.add_argument("--skip-baseline", action="store_true",
                    help="this tree only (no result line: its ratio needs the baseline)")
    args = ap.parse_args()

    from gpu_paced_model import check_persistence, runner_step_seconds, save_paced_checkpoint

    steps = args.lead_time // 6
    pure = args.members * steps * args.step_seconds
    overlay = {"members": f"1-{args.members}",
               "checkpoint": "demo/checkpoint/paced.ckpt",
               "forecast": {"lead_time": args.lead_time,
                            "hours_per_file": 72 if args.lead_time % 72 == 0 else args.lead_time},
               # the quest's regrid runs in the forecast job; it needs the full 768 h
               "quest": {"enabled": args.lead_time >= 768},
               "cgan": {"enabled": False}, "demo": {"checkpoint_grid": args.grid}}
    walls: dict[str, list[float]] = {"ensflow": [], "landed": []}
    busy: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        calibrate = save_paced_checkpoint(root / "calibrate.ckpt", args.grid, 0.0)
        compared = check_persistence(calibrate, args.grid)
        print(f"stand-in outputs equal anemoi's SimpleMockModel: {compared} fields, 2 states "
              "on one runner", flush=True)
        runner_s = runner_step_seconds(calibrate)
        if runner_s >= args.step_seconds:
            raise SystemExit(f"a runner step alone takes {runner_s:.2f}s here, more than "
                             f"--step-seconds {args.step_seconds}")
        print(f"runner's own work per step on {args.grid}: {runner_s:.3f}s (median of 7); the "
              f"model sleeps {args.step_seconds - runner_s:.3f}s per step", flush=True)
        ckpt = save_paced_checkpoint(root / "paced.ckpt", args.grid, args.step_seconds - runner_s)
        # mir's interpolation weights are cached per machine: made here once, not in the
        # first timed cycle's first input
        warm = workflow_copy(REPO, root / "warm-up", {**overlay, "members": "1"}, ckpt)
        snakemake(warm, "-q", "--until", "prepare_input")
        shutil.rmtree(warm)
        landed = root / "landed-tree"
        designs = [("ensflow", REPO)]
        if not args.skip_baseline:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                            str(landed), args.baseline_rev], check=True)
            designs.append(("landed", landed))
        try:
            for run in range(args.runs):
                for name, source in designs:
                    wall, fraction = one_cycle(source, root / f"{name}-{run}", overlay, ckpt)
                    walls[name].append(wall)
                    if name == "ensflow" and fraction is not None:
                        busy.append(fraction)
                    print(f"run {run + 1} {name:8s}: wall {wall:7.1f}s  wall/GPU "
                          f"{wall / pure:.3f}", flush=True)
        finally:
            if not args.skip_baseline:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(landed)], check=False)
    ours = [w / pure for w in walls["ensflow"]]
    base = [w / pure for w in walls["landed"]]
    print(f"GPU-paced cycle: {args.members} members x {steps} steps x {args.step_seconds}s "
          f"on {args.grid} = {pure:.0f}s pure GPU time, {args.runs} run(s) each, 2 cores")
    print(f"  wall / pure GPU time, ensflow       : {spread(ours)}")
    if base:
        print(f"  wall / pure GPU time, landed ({args.baseline_rev}): {spread(base)}")
    if busy:
        print(f"  GPU-busy fraction in the run report : {spread(busy)} "
              f"(1 / ratio = {1 / statistics.median(ours):.3f})")
    print(json.dumps({"walls": walls, "pure_gpu_s": pure, "gpu_busy": busy}))
    if not base:
        print("no baseline run (--skip-baseline), so no result line")
        return
    m_ours, m_base = statistics.median(ours), statistics.median(base)
    print(f"result: wall_over_gpu_time {m_ours:.3f} x baseline {m_base:.3f} "
          f"ratio {m_ours / m_base:.3f}")


if __name__ == "__main__":
    main()
