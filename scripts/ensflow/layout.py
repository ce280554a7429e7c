"""Where everything of a cycle lives: every path, object name and wildcard pattern that the
rules, the stages, status, report and purge use is built here and nowhere else.

Bucket and product names are today's (existing buckets and the team's tools keep working)
or the external system's own (ECMWF open data, the AI Weather Quest, the cGAN tooling).
Workflow paths take Snakemake wildcards by default (`{cycle}`, `{member}`), so the rules
and the operations read one definition: `Layout().input_receipt()` is the rule's pattern,
`layout.input_receipt("20251127_0000", 3)` the file of member 3.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ensflow.cycle import member_id

if TYPE_CHECKING:
    from ensflow.config import Settings

CYCLE, MEMBER = "{cycle}", "{member}"
Member = int | str  # a member number, or the `{member}` wildcard

# Wildcards whose value reads as `<name>_<value>` in a job's file name and label
# (`member_003`, `step_036`, `batch_00`); others (the preflight's stage) as the value.
_NAMED_WILDCARDS = ("member", "step", "batch")

# Object names in the bucket and in ECMWF's open data (the templates below are the only
# spelling; `cycle_object` matches against them).
INPUT_NAME = "input_state_member_{member}.pkl"
FORECAST_NAME = "aifs_ens_forecast_{cycle}_member{member}_{window}.grib"
WINDOW = "h{start:03d}-{end:03d}"
MEMBER_DIR = "member_{member}"  # a member's scratch folder
PREFLIGHT_PROBE = ".ensflow-preflight"  # the preflight's write probe under {bucket}/{cycle}/


def _member(member: Member) -> str:
    return member if isinstance(member, str) else member_id(member)


def join_url(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


# ---------------------------------------------------------------- forecast files and objects


def forecast_windows(lead_time: int, hours_per_file: int) -> list[tuple[int, int]]:
    """Output files as (start, end] hour windows: 792 h in 72 h files gives 11 windows."""
    if lead_time % hours_per_file:
        raise ValueError(f"lead_time {lead_time} h is not a multiple of {hours_per_file} h")
    return [(a, a + hours_per_file) for a in range(0, lead_time, hours_per_file)]


def window_tag(start: int, end: int) -> str:
    return WINDOW.format(start=start, end=end)


def forecast_filename(cycle: str, member: Member, start: int, end: int) -> str:
    return FORECAST_NAME.format(cycle=cycle, member=_member(member),
                                window=window_tag(start, end))


def input_filename(member: Member) -> str:
    return INPUT_NAME.format(member=_member(member))


def input_object(bucket: str, cycle: str, member: int) -> str:
    return join_url(bucket, cycle, "input", input_filename(member))


def forecast_object(bucket: str, cycle: str, filename: str) -> str:
    return join_url(bucket, cycle, "forecasts", filename)


def preflight_probe(bucket: str, cycle: str) -> str:
    return join_url(bucket, cycle, PREFLIGHT_PROBE)


def cycle_object(relative: str, cycle: str) -> bool:
    """Whether a key under {bucket}/{cycle}/ is one ensflow writes (the names above)."""
    wild = {"member": r"\d{3}", "window": r"h\d{3}-\d{3}", "cycle": re.escape(cycle)}

    def pattern(folder: str, template: str) -> str:
        parts = string.Formatter().parse(template)
        return re.escape(folder + "/") + "".join(
            re.escape(text) + (wild[name] if name else "") for text, name, _, _ in parts)

    return (relative == PREFLIGHT_PROBE
            or re.fullmatch(pattern("input", INPUT_NAME), relative) is not None
            or re.fullmatch(pattern("forecasts", FORECAST_NAME), relative) is not None)


def cycle_of_object(url: str, cycle: str) -> str | None:
    """The {bucket}/{cycle}/ prefix an ensflow object sits under, if it has this layout."""
    head, sep, tail = url.rpartition(f"/{cycle}/")
    return head + sep if sep and cycle_object(tail, cycle) else None


def opendata_object(
    root: str, base: dt.datetime, step: int, model: str = "ifs", resol: str = "0p25",
    stream: str = "enfo", file_type: str = "ef",
) -> str:
    """ECMWF open-data layout (ecmwf-opendata's HOURLY_PATTERN); dates before 2024-02-28 06z
    have no model segment. `file_type` is `ef` for enfo, `fc` for oper/scda."""
    ymd, hh = base.strftime("%Y%m%d"), base.strftime("%H")
    stem = f"{base:%Y%m%d%H}0000-{step}h-{stream}-{file_type}.grib2"
    if base < dt.datetime(2024, 2, 28, 6):
        return join_url(root, ymd, f"{hh}z", resol, stream, stem)
    return join_url(root, ymd, f"{hh}z", model, resol, stream, stem)


def index_of(grib_url: str) -> str:
    return grib_url.rsplit(".", 1)[0] + ".index"


# ---------------------------------------------------------------- products' external names


def cgan_netcdf_name(cycle: str) -> str:
    """`IFS_{YYYYMMDD}_{HH}Z_cgan.nc`, the name the team's producer writes and their tools open."""
    return f"IFS_{cycle[:8]}_{cycle[9:11]}Z_cgan.nc"


def submission_name(var: str, issue: dt.datetime, period: int, team: str, model: str) -> str:
    """The AI Weather Quest's file name (AI_WQ_package's submission check)."""
    return f"{var}_{issue:%Y%m%d}_p{period}_{team}_{model}.nc"


def climatology_name(var: str, aggregation: str, valid: dt.date) -> str:
    """The quest's name for a variable's climatology for the week starting `valid`."""
    return f"{var}_20yrCLIM_{aggregation}_quintiles_{valid:%Y%m%d}.nc"


def climatology_remote_path(name: str, valid: dt.date) -> str:
    """Its path on the quest's server (AI_WQ_package: /climatologies/{year}/{filename})."""
    return f"climatologies/{valid:%Y}/{name}"


DEMO_CLIMATOLOGY_ROOT = "file://demo/aiwq"  # where the demo serves the quest's layout


def served_climatology(root: str | None, paths: list[str]) -> list[str]:
    """The local files of a file:// mirror of the quest's climatology layout (the demo
    writes one; `root` None is the demo's own)."""
    return [join_url(root or DEMO_CLIMATOLOGY_ROOT, p).removeprefix("file://") for p in paths]


def store_branch(cycle: str) -> str:
    """The Icechunk branch a cycle's batches write to before the publish."""
    return f"run/{cycle}"


def store_tag(cycle: str) -> str:
    """The Icechunk tag of a published cycle."""
    return f"cycle-{cycle}"


# ---------------------------------------------------------------- the workflow's files


def job_stem(wildcards: dict[str, str]) -> str:
    """`member_003`, `step_036`, `aifs`: a job's file name and label from its wildcards."""
    return "_".join(f"{k}_{v}" if k in _NAMED_WILDCARDS else v
                    for k, v in wildcards.items() if k != "cycle")


def job_label(wildcards: dict[str, str]) -> str:
    """`member 003`: the same, as log lines and the report say it."""
    return job_stem(wildcards).replace("_", " ")


# What a job leaves beside its outputs and a cluster run's report reads back.
JOB_FILE_SUFFIXES = (".log", ".tsv", ".json", ".png")
WINDOW_LOCK = ".window.lock"  # in scratch/<cycle>/: the member window's lock
MEMBER_CLAIM = ".claim"  # in a member's scratch folder: its slot in the window
MEMBER_FAILED = ".failed"  # ...: it failed and gave its slot back
# The extended attribute that keeps a file's crc32c with it (adapters.storage).
CRC32C_XATTR = "user.ensflow.crc32c"


@dataclass(frozen=True)
class JobFiles:
    record: Path
    log: Path
    benchmark: Path
    shared: bool  # of no one cycle


@dataclass(frozen=True)
class Layout:
    """The run directory's layout: results, scratch, logs and benchmarks per cycle."""

    results: str = "results"
    scratch: str = "scratch"
    logs: str = "logs"
    benchmarks: str = "benchmarks"

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        return cls(results=settings.results, scratch=settings.scratch)

    # -- results/<cycle>/
    def cycle_results(self, cycle: str = CYCLE) -> str:
        return f"{self.results}/{cycle}"

    def receipts(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/receipts"

    def receipt_files(self, workdir: Path, cycle: str) -> list[Path]:
        """Every receipt the cycle's jobs wrote (inputs and uploads, any member)."""
        folder = workdir / self.receipts(cycle)
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def input_receipt(self, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        return f"{self.receipts(cycle)}/input_member_{_member(member)}.json"

    def upload_receipt(self, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        return f"{self.receipts(cycle)}/forecast_member_{_member(member)}.json"

    def checkpoint_record(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/checkpoint.json"

    def demo_mirror_record(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/demo_mirror.json"

    def preflight(self, cycle: str = CYCLE, stage: str = "{stage}") -> str:
        return f"{self.cycle_results(cycle)}/preflight_{stage}.json"

    def report(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/report.html"

    @staticmethod
    def report_numbers(report: Path) -> Path:
        """The report's numbers as JSON, beside the page."""
        numbers = report.with_suffix(".json")
        return numbers if numbers != report else report.with_name(report.name + ".json")

    def purge_record(self, cycle: str = CYCLE) -> str:
        return f"{self.results}/purged/{cycle}.json"

    # -- scratch/<cycle>/member_NNN/
    def scratch_cycle(self, cycle: str = CYCLE) -> str:
        return f"{self.scratch}/{cycle}"

    def gpu_slots(self) -> str:
        """The GPU slots' locks and their model processes' logs (all cycles)."""
        return f"{self.scratch}/.gpu-slots"

    def model_process_log(self, slot: str) -> str:
        return f"{self.gpu_slots()}/model-process.{slot}.log"

    def prepare_dir(self, cycle: str = CYCLE) -> str:
        """Where prepare_input writes a pickle before it goes to the bucket."""
        return f"{self.scratch_cycle(cycle)}/prepare"

    def member_dir(self, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        return f"{self.scratch_cycle(cycle)}/{MEMBER_DIR.format(member=_member(member))}"

    def input_state(self, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        return f"{self.member_dir(cycle, member)}/{input_filename(member)}"

    def forecast_gribs(self, windows: list[tuple[int, int]], cycle: str = CYCLE,
                       member: Member = MEMBER) -> list[str]:
        return [f"{self.member_dir(cycle, member)}/{forecast_filename(cycle, member, a, b)}"
                for a, b in windows]

    # -- results/<cycle>/cgan/
    def cgan(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/cgan"

    def cgan_index(self, cycle: str = CYCLE, step: str = "{step}") -> str:
        return f"{self.cgan(cycle)}/index/step_{step}.json"

    def cgan_setup(self, cycle: str = CYCLE) -> str:
        return f"{self.cgan(cycle)}/setup.json"

    def cgan_fork(self, cycle: str = CYCLE, batch: str = "{batch}") -> str:
        return f"{self.cgan(cycle)}/forks/batch_{batch}.fork"

    def cgan_sums(self, cycle: str = CYCLE, batch: str = "{batch}") -> str:
        """A batch's partial sums (ensflow.science.ensemble_moments), beside its fork."""
        return f"{self.cgan(cycle)}/forks/batch_{batch}.sums.npz"

    def cgan_published(self, cycle: str = CYCLE) -> str:
        return f"{self.cgan(cycle)}/published.json"

    def cgan_netcdf(self, named_for: str, cycle: str = CYCLE) -> str:
        """The file is named for the configured cycle; its folder may be a wildcard."""
        return f"{self.cgan(cycle)}/{cgan_netcdf_name(named_for)}"

    # -- results/<cycle>/quest/
    def quest(self, cycle: str = CYCLE) -> str:
        return f"{self.cycle_results(cycle)}/quest"

    def quest_fields(self, source: str, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        """A member's 1.5° fields, made by the forecast itself or read back from the bucket."""
        return f"{self.quest(cycle)}/members/member_{_member(member)}.{source}.npz"

    def quest_setup(self, cycle: str = CYCLE) -> str:
        return f"{self.quest(cycle)}/setup.json"

    def quest_fork(self, cycle: str = CYCLE, member: Member = MEMBER) -> str:
        return f"{self.quest(cycle)}/forks/member_{_member(member)}.fork"

    def quest_published(self, cycle: str = CYCLE) -> str:
        return f"{self.quest(cycle)}/published.json"

    def quest_climatology(self, names: list[str], cycle: str = CYCLE) -> list[str]:
        return [f"{self.quest(cycle)}/climatology/{n}" for n in names]

    def quest_climatology_record(self, cycle: str = CYCLE) -> str:
        return f"{self.quest(cycle)}/climatology.json"

    def quest_submissions(self, names: list[str], cycle: str = CYCLE) -> list[str]:
        return [f"{self.quest(cycle)}/submission/{n}" for n in names]

    def quest_anomalies(self, cycle: str = CYCLE) -> str:
        """Ensemble-mean weekly anomalies per product, for the maps."""
        return f"{self.quest(cycle)}/anomalies.npz"

    def quest_sanity(self, cycle: str = CYCLE) -> str:
        return f"{self.quest(cycle)}/sanity.json"

    def quest_maps(self, products: list[tuple[str, int]], cycle: str = CYCLE) -> list[str]:
        return [f"{self.quest(cycle)}/maps/{v}_p{p}.png" for v, p in products]

    def quest_upload_ready(self, cycle: str = CYCLE) -> str:
        return f"{self.quest(cycle)}/upload_ready.json"

    # -- logs/<cycle>/<rule>/<stem>.{log,json}, benchmarks/<cycle>/<rule>/<stem>.tsv
    def _job(self, root: str, rule: str, wildcards: tuple[str, ...], cycle: str | None) -> str:
        stem = job_stem({w: "{" + w + "}" for w in wildcards})
        folder = f"{root}/{cycle}" if cycle else root
        return f"{folder}/{rule}/{stem}" if stem else f"{folder}/{rule}"

    def job_log(self, rule: str, *wildcards: str, cycle: str | None = CYCLE) -> dict[str, str]:
        """A rule's `log:` entries: the log itself and the job's JSON record beside it."""
        base = self._job(self.logs, rule, wildcards, cycle)
        return {"log": f"{base}.log", "record": f"{base}.json"}

    def job_benchmark(self, rule: str, *wildcards: str, cycle: str | None = CYCLE) -> str:
        return f"{self._job(self.benchmarks, rule, wildcards, cycle)}.tsv"

    def job_files(self, workdir: Path, cycle: str) -> list[JobFiles]:
        """Every job record of the cycle, and of no one cycle (the demo checkpoint, directly
        under logs/), with the log and benchmark that go with it."""
        found = []
        for sub, shared in ((cycle, False), ("", True)):
            records, benchmarks = workdir / self.job_logs(sub), workdir / self.benchmarks / sub
            if records.is_dir():
                found += [JobFiles(p, p.with_suffix(".log"),
                                   (benchmarks / p.relative_to(records)).with_suffix(".tsv"), shared)
                          for p in sorted(records.glob("*.json") if shared else records.rglob("*.json"))]
        return found

    def job_logs(self, cycle: str = CYCLE) -> str:
        return f"{self.logs}/{cycle}"

    def workflow_roots(self, cycle: str) -> list[str]:
        """The folders Snakemake keeps one cycle's files in (under a cluster's storage prefix)."""
        return [self.cycle_results(cycle), self.job_logs(cycle), f"{self.benchmarks}/{cycle}"]

    def cycle_roots(self, cycle: str) -> list[str]:
        """Every local folder the rules write for one cycle (what purge removes)."""
        return [*self.workflow_roots(cycle), self.scratch_cycle(cycle)]


# ---------------------------------------------------------------- .snakemake/


def run_lock(workdir: Path) -> Path:
    """The directory's run lock (ops.runlock) and Snakemake's own lock folder."""
    return workdir / ".snakemake" / "ensflow-run.lock"


def snakemake_locks(workdir: Path) -> list[Path]:
    """Snakemake's own lock files (left behind by a run that was killed)."""
    return sorted((workdir / ".snakemake" / "locks").glob("*.lock"))


def store_commit_lock(store_dir: Path) -> Path:
    """Beside a local Icechunk store: the lock its commits take (ensemble_store)."""
    return store_dir.with_name(store_dir.name + ".commit.lock")


WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "profiles", "envs", "report")


def copy_workflow(source: Path, dest: Path) -> Path:
    """The workflow's own files (not a run's) into `dest`: a fresh directory to run in."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def mirror_dir(workdir: Path, cycle: str) -> Path:
    """Where a cluster run's files are copied on the submitting machine."""
    return workdir / ".snakemake" / "ensflow-mirror" / cycle


def gcs_emulator_account(tmp_dir: Path, host: str, uid: int) -> Path:
    """The service-account file that points Icechunk at a GCS emulator (adapters.storage)."""
    return tmp_dir / f"ensflow-gcs-emulator-{uid}-{zlib.crc32(host.encode()):08x}.json"


# ---------------------------------------------------------------- watch and backfill


def watch_run_dir(runs: Path, stage: str, cycle: str) -> Path:
    """One scheduled run's own Snakemake directory: its config, results, logs, .snakemake."""
    return runs / stage / cycle


def watch_state(run_dir: Path) -> Path:
    """What watch/backfill know of that run: waiting, running, finished, missed; attempts."""
    return run_dir / "watch.json"


def watch_missing(run_dir: Path) -> Path:
    """At the deadline: every object and field still missing, in full."""
    return run_dir / "missing.json"


def watch_attempt_log(run_dir: Path, attempt: int) -> Path:
    """Snakemake's output of one attempt."""
    return run_dir / f"attempt-{attempt}.log"


def watch_config(run_dir: Path) -> Path:
    """The run's whole config, written by watch (Snakemake reads config/config.yaml)."""
    return run_dir / "config" / "config.yaml"
