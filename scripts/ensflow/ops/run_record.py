"""A cycle's run as typed records, read back from what its jobs leave behind.

Every job writes a structured record beside its log (`ensflow.logs.step`: rule, wildcards,
cores and resources Snakemake gave it, status, start, end, error), some rules a Snakemake
benchmark, uploads a receipt. Reading those files, rather than Snakemake's own state, lets
the report and `ensflow status` work during a run, after a crash and on a copy of the tree,
without importing Snakemake. Nothing here parses log text.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ensflow import receipts
from ensflow.config import Settings
from ensflow.layout import JOB_FILE_SUFFIXES, JobFiles, Layout, job_label, mirror_dir

# Per-member chain, in order: what a member needs before its forecast is in the bucket.
CHAIN = ("prepare_input", "fetch_input", "forecast", "upload")
GPU_RULE = "forecast"

JobStatus = Literal["done", "failed", "running", "unknown"]

# A failed job's excerpt: the end of its log, read from the tail only.
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Benchmark:
    """One Snakemake benchmark row (the last one when a rule repeats)."""

    seconds: float | None
    max_rss_mb: float | None
    mean_load: float | None
    cpu_time: float | None
    io_in_mb: float | None
    io_out_mb: float | None


@dataclass(frozen=True)
class Job:
    """One job as its log tells it."""

    rule: str
    label: str | None
    member: int | None
    status: JobStatus
    started: dt.datetime | None
    ended: dt.datetime | None
    seconds: float | None
    log: Path
    benchmark: Benchmark | None = None
    error: str | None = None
    excerpt: list[str] = field(default_factory=list)
    shared: bool = False  # a log outside logs/<cycle>/ (the demo checkpoint): not this cycle's alone
    threads: int = 1
    gpu_slot: str | None = None  # forecast: the GPU slot (or "cpu") its member ran on
    inference: tuple[dt.datetime, dt.datetime] | None = None  # forecast: when the model ran

    @property
    def name(self) -> str:
        return f"{self.rule} {self.label}" if self.label else self.rule

    @property
    def wall_seconds(self) -> float | None:
        """What the job held its slot for: the benchmark's wall time (start-up included)
        where the rule has one, else the time its log measured."""
        if self.benchmark and self.benchmark.seconds is not None:
            return self.benchmark.seconds
        return self.seconds


@dataclass(frozen=True)
class Receipt:
    """Bytes one receipt stands for, split into sent and already-there objects."""

    kind: Literal["input", "forecast"]
    member: int | None
    path: Path
    uploaded: int
    skipped: int

    @property
    def bytes(self) -> int:
        return self.uploaded + self.skipped


@dataclass
class CycleRecord:
    """Everything on disk about one cycle's run."""

    cycle: str
    workdir: Path
    results: Path
    members: list[int]
    jobs: list[Job]
    receipts: list[Receipt]
    upload_receipts: set[int]
    input_receipts: set[int]
    records: dict[str, dict[str, Any]]
    _by_member: dict[tuple[str, int], Job] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_member = {(j.rule, j.member): j for j in self.jobs if j.member is not None}

    def member_job(self, rule: str, member: int) -> Job | None:
        return self._by_member.get((rule, member))


def _tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - _TAIL_BYTES))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return lines[-n:] if size <= _TAIL_BYTES else lines[1:][-n:]


def _threads(given: Any) -> int:
    """The cores Snakemake gave the job: 0 for one that takes none (fetch_input in the
    profiles), 1 where an older log does not say."""
    return 1 if given is None else int(given)


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def read_record(files: JobFiles, excerpt_lines: int = 20) -> Job | None:
    """A job from the record its job wrote beside its log (ensflow.logs.step)."""
    data = receipts.read_if_any(files.record)
    if data is None or "rule" not in data:
        return None
    wildcards = data.get("wildcards") or {}
    label = job_label(wildcards) or None
    member = int(wildcards["member"]) if "member" in wildcards else None
    started, ended = _when(data.get("started")), _when(data.get("ended"))
    status: JobStatus = data.get("status") if data.get("status") in ("done", "failed", "running") \
        else "unknown"
    seconds = data.get("seconds")
    log_path = files.log
    if status == "running" and started:  # still going, or killed: its last heartbeat
        seconds = max(0.0, ((_when(data.get("last_seen")) or started) - started).total_seconds())
    excerpt = _tail_lines(log_path, excerpt_lines) if status == "failed" else []
    inference = data.get("inference")
    return Job(rule=data["rule"], label=label, member=member, status=status, started=started,
               ended=ended, seconds=seconds, log=log_path, error=data.get("error"),
               excerpt=excerpt, shared=files.shared, threads=_threads(data.get("threads")),
               gpu_slot=data.get("gpu_slot"),
               inference=tuple(map(dt.datetime.fromisoformat, inference)) if inference else None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_benchmark(path: Path) -> Benchmark | None:
    """Snakemake's benchmark TSV: header, then one row per repeat."""
    try:
        rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    row = dict(zip(rows[0], rows[-1], strict=False))

    def get(key: str) -> float | None:
        return _number(row[key]) if key in row else None

    return Benchmark(seconds=get("s"), max_rss_mb=get("max_rss"), mean_load=get("mean_load"),
                     cpu_time=get("cpu_time"), io_in_mb=get("io_in"), io_out_mb=get("io_out"))


def shown_path(path: Path, workdir: Path) -> str:
    """A path as the report and status print it: relative to the run's directory if inside."""
    try:
        return str(path.relative_to(workdir))
    except ValueError:
        return str(path)


def _job_from(files: JobFiles, excerpt_lines: int) -> Job | None:
    """A job's record and, where its rule has one, its benchmark."""
    job = read_record(files, excerpt_lines)
    if job is None:
        return None
    if files.benchmark.is_file() and not _older_than(files.benchmark, job.started):
        job = replace(job, benchmark=read_benchmark(files.benchmark))
    return job


def _older_than(path: Path, started: dt.datetime | None) -> bool:
    """A benchmark written before the job's (latest) start belongs to an earlier attempt."""
    if started is None:
        return False
    written = dt.datetime.fromtimestamp(path.stat().st_mtime)
    return written < started - dt.timedelta(seconds=1)


def read_jobs(layout: Layout, workdir: Path, cycle: str, excerpt_lines: int = 20) -> list[Job]:
    """Every job with a record for this cycle, plus those of no one cycle, by start."""
    jobs = [j for f in layout.job_files(workdir, cycle) if (j := _job_from(f, excerpt_lines))]
    far = dt.datetime.max
    jobs.sort(key=lambda j: (j.started or far, j.rule, j.label or ""))
    return jobs


def _receipt(kind: Literal["input", "forecast"], path: Path, data: dict[str, Any]) -> Receipt:
    """Bytes sent and bytes already there; a receipt naming no object counts its "bytes"."""
    uploaded = skipped = 0
    for obj in receipts.objects(data) or [
            {"size": data.get("bytes", data.get("size")), "skipped": data.get("skipped")}]:
        size = int(obj.get("size") or 0)
        if obj.get("skipped"):
            skipped += size
        else:
            uploaded += size
    member = data.get("member")
    return Receipt(kind=kind, member=int(member) if isinstance(member, int) else None, path=path,
                   uploaded=uploaded, skipped=skipped)


def load_cycle(settings: Settings, workdir: Path) -> CycleRecord:
    """Read a cycle's logs, benchmarks, receipts and records; missing pieces are just absent."""
    workdir = Path(workdir)
    layout, cycle = Layout.of(settings), settings.cycle
    results = workdir / layout.cycle_results(cycle)
    jobs = read_jobs(layout, workdir, cycle, settings.report.log_excerpt_lines)
    found_receipts: list[Receipt] = []
    uploads: set[int] = set()
    inputs: set[int] = set()
    kinds: tuple[tuple[Literal["input", "forecast"], Any, set[int]], ...] = (
        ("input", layout.input_receipt, inputs), ("forecast", layout.upload_receipt, uploads))
    for kind, receipt_of, found in kinds:
        for member in settings.members:
            path = workdir / receipt_of(cycle, member)
            if (data := receipts.read_if_any(path)) is None:
                continue
            receipt = _receipt(kind, path, data)
            found_receipts.append(receipt)
            found.add(receipt.member if receipt.member is not None else member)
    record_paths = {"checkpoint": layout.checkpoint_record(cycle),
                    "cgan_published": layout.cgan_published(cycle),
                    "quest_published": layout.quest_published(cycle),
                    "quest_sanity": layout.quest_sanity(cycle)}
    records = {key: data for key, rel in record_paths.items()
               if (data := receipts.read_if_any(workdir / rel))}
    return CycleRecord(cycle=settings.cycle, workdir=workdir, results=results,
                       members=list(settings.members), jobs=jobs, receipts=found_receipts,
                       upload_receipts=uploads, input_receipts=inputs, records=records)


MemberState = Literal["done", "failed", "running", "waiting"]


def stage_state(record: CycleRecord, rule: str, member: int) -> MemberState:
    """Where one member stands in one chain stage.

    A member whose upload receipt exists is done everywhere (its scratch files are gone, its
    logs may be from an earlier run); the upload stage is done only with that receipt.
    """
    if member in record.upload_receipts:
        return "done"
    if rule == "prepare_input" and member in record.input_receipts:
        return "done"
    job = record.member_job(rule, member)
    if job is None or job.status == "unknown":
        return "waiting"
    if job.status == "done":
        return "waiting" if rule == "upload" else "done"
    return job.status


def member_state(record: CycleRecord, member: int) -> MemberState:
    """A member's chain as a whole: done once uploaded, failed if any stage failed last time."""
    if member in record.upload_receipts:
        return "done"
    states = [stage_state(record, rule, member) for rule in CHAIN]
    if "failed" in states:
        return "failed"
    if "running" in states:
        return "running"
    return "waiting"


def mirror_from_storage(prefix: str, settings: Settings, workdir: Path) -> Path:
    """Copy a cycle's logs, benchmarks and records from Snakemake's storage prefix to its
    `mirror_dir` under `workdir`, and return that.

    On a cluster (`--default-storage-provider`) every job's files live under the prefix, not
    on the submitting machine; a local mirror with the same layout lets the same code read them.
    """
    from ensflow.adapters.storage import Storage

    storage = Storage.from_settings(settings)
    dest = mirror_dir(workdir, settings.cycle)
    prefix = prefix.rstrip("/")
    layout, cycle = Layout.of(settings), settings.cycle
    shared = layout.logs.strip("/")  # records of no one cycle, directly under it
    for sub in (*(r.strip("/") for r in layout.workflow_roots(cycle)), shared):
        for info in storage.list_prefix(f"{prefix}/{sub}/"):
            relative = info.url[len(f"{prefix}/"):]
            if sub == shared and "/" in relative.removeprefix(f"{sub}/"):
                continue  # only the records of no one cycle at this level
            if not relative.endswith(JOB_FILE_SUFFIXES):
                continue
            local = dest / relative
            if local.is_file() and local.stat().st_size == info.size and not relative.endswith(".log"):
                continue
            storage.get_file(info.url, local)
    return dest
