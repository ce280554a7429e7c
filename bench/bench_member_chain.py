"""One member's chain on the demo, time per step: what Snakemake's orchestration costs.

The chain alone: prepare_input, fetch_input, forecast, upload for one member, cGAN and the
quest off, through plain `snakemake --profile profiles/demo aifs` (a process per job). The
demo inputs and the once-per-cycle preflight are made before the clock starts. Baseline in
the same run: the same four steps called one after another in one Python process, the
model loaded in it. The difference is the per-member orchestration (process start,
imports, DAG, bookkeeping, the hand-over to the model process), plus Snakemake's start-up,
printed apart from a dry run.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
CYCLE = "20251127_0000"
STEPS = ("prepare_input", "fetch_input", "forecast", "upload")
CHAIN_ONLY = {"members": "1", "cgan": {"enabled": False}, "quest": {"enabled": False}}


def copy_workflow(dest: Path) -> None:
    from ensflow.layout import copy_workflow

    copy_workflow(REPO, dest)
    (dest / "chain.yaml").write_text(yaml.safe_dump(CHAIN_ONLY))


def snakemake(work: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "snakemake"), *args, "--profile",
                    "profiles/demo", "--configfile", "config/config.yaml", "chain.yaml"],
                   cwd=work, check=True, capture_output=True)
    return time.perf_counter() - t0


def via_snakemake(work: Path) -> tuple[float, float, dict[str, float]]:
    snakemake(work, "-q", "--until", "demo_mirror", "checkpoint_record", "preflight")
    startup = snakemake(work, "aifs", "-n", "-q")  # parse, DAG, no job
    wall = snakemake(work, "aifs", "-q")
    steps = {}
    for step in STEPS:
        with open(work / f"benchmarks/{CYCLE}/{step}/member_001.tsv") as f:
            steps[step] = float(next(csv.DictReader(f, delimiter="\t"))["s"])
    return wall, startup, steps


def in_process(work: Path) -> tuple[float, dict[str, float]]:
    import os

    os.chdir(work)
    from ensflow.config import load
    from ensflow.layout import forecast_filename, forecast_windows
    from ensflow.stages.forecast import run_member
    from ensflow.stages.inputs import fetch_input, prepare_input
    from ensflow.stages.upload import upload_member

    settings = load("config/config.yaml", {**CHAIN_ONLY, "bucket": "file://bucket2",
                                           "scratch": "scratch2"})
    res = Path("results2")
    pkl = Path("scratch2") / CYCLE / "member_001" / "input_state_member_001.pkl"
    gribs = [pkl.parent / forecast_filename(CYCLE, 1, a, b) for a, b in forecast_windows(792, 72)]
    times = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    prepare_input(settings, 1, res / "in.json")
    times["prepare_input"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fetch_input(settings, 1, res / "in.json", pkl)
    times["fetch_input"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_member(settings, 1, pkl, gribs)
    times["forecast"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    upload_member(settings, 1, gribs, res / "out.json", res / "in.json",
                  f"results/{CYCLE}/checkpoint.json")
    times["upload"] = time.perf_counter() - t0
    return time.perf_counter() - t_all, times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_workflow(work)
        wall_sm, startup, sm = via_snakemake(work)
        wall_ip, ip = in_process(work)
    print("one member's chain alone on the demo (O48, 792 h, 11 GRIB files; cGAN, quest off)")
    print(f"{'step':<15}{'snakemake job s':>16}{'in-process s':>14}")
    for step in STEPS:
        print(f"{step:<15}{sm[step]:>16.2f}{ip[step]:>14.2f}")
    print(f"{'chain wall':<15}{wall_sm:>16.2f}{wall_ip:>14.2f}")
    print(f"orchestration: {wall_sm - wall_ip:.1f}s for the chain, of which Snakemake's start-up "
          f"(dry run: parse, DAG) {startup:.1f}s is once per cycle and "
          f"{wall_sm - wall_ip - startup:.1f}s is per member")
    print(f"result: member_chain_wall {wall_sm:.2f} s baseline {wall_ip:.2f} "
          f"ratio {wall_sm / wall_ip:.2f}")


if __name__ == "__main__":
    main()
