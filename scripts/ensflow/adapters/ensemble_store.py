"""The ensemble-store protocol on Icechunk: parallel writers, one atomic publish per cycle.

1. setup (one job): remember main's snapshot, create the run branch `run/<cycle>`, grow
   the arrays along the init-time axis (metadata only), commit. Re-used on retry.
2. batch (many jobs): fork a session of the run branch, write a disjoint member region,
   save the fork to a file. No commits, so no conflicts and no load on refs.
3. publish (one job): merge every fork, one commit, compare-and-swap main from the
   snapshot recorded at setup, tag the cycle, delete the run branch. Idempotent; if main
   moved meanwhile it refuses and keeps the branch.

Every Icechunk write in ensflow passes through here. Readers of `main` see the archive
before the cycle or with the cycle complete, never in between.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ensflow import receipts
from ensflow.adapters import safe_pickle
from ensflow.adapters.storage import Storage
from ensflow.cycle import HOURS_SINCE_1900
from ensflow.errors import EnsflowError
from ensflow.flock import exclusive
from ensflow.layout import store_branch, store_commit_lock, store_tag

log = logging.getLogger(__name__)
# Icechunk's warnings reach the job logs, but two it prints on every open: the local
# filesystem's "not safe for concurrent commits" (commits to a local store take
# `commits_serialized`'s lock) and "transient PUT failures may surface as spurious
# conflicts" (a publish refused that way finds its commit in main when run again).
os.environ.setdefault("ICECHUNK_LOG",
                      "warn,icechunk_arrow_object_store=error,icechunk_storage::readback=error")

CREATE_RACE_WAIT_S = 30.0  # how long a run that lost the race to create a store waits

# A fork file is a pickle: only Icechunk's own fork class may be rebuilt from it.
FORK_ALLOWED = frozenset({("icechunk.session", "ForkSession")})


class PublishError(EnsflowError):
    """The cycle cannot be published safely (main moved, branch moved, forks missing)."""


@dataclass(frozen=True)
class ArraySpec:
    """A data variable: dims (time, member, *dims) with one chunk per (time, member)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreSchema:
    """What the store holds: fixed coordinates, the growing time axis and data variables."""

    coords: dict[str, np.ndarray]
    coord_attrs: dict[str, dict[str, Any]]
    arrays: tuple[ArraySpec, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    time_units: str = HOURS_SINCE_1900


@dataclass(frozen=True)
class SetupRecord:
    cycle: str
    branch: str
    main_before: str
    setup_snapshot: str
    time_index: int
    time_value: int
    published: bool = False  # the cycle was already in main: nothing to write

    @classmethod
    def load(cls, path: str | Path) -> SetupRecord:
        data = receipts.read(path)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def open_repo(url: str, storage: Storage, create: bool = True) -> Any:
    """An Icechunk repository at file://, s3:// or gs://, reached as `storage` reaches
    buckets (endpoint, region, credentials) and with its retries (Storage.icechunk_config)."""
    import icechunk

    where = storage.icechunk_storage(url)
    config = storage.icechunk_config()
    if not create:
        return icechunk.Repository.open(where, config=config)
    try:
        return icechunk.Repository.open_or_create(where, config=config)
    except icechunk.IcechunkError:
        # Two runs starting on a new store: the one whose create lost opens the winner's,
        # once the winner has written it whole (its first objects land before the repo
        # file, and a create on that prefix fails with "not clean" meanwhile).
        deadline = time.monotonic() + CREATE_RACE_WAIT_S
        while not icechunk.Repository.exists(where):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        return icechunk.Repository.open(where, config=config)


@contextlib.contextmanager
def commits_serialized(url: str) -> Iterator[None]:
    """Hold while committing to the store at `url`. Object stores (s3://, gs://) make a
    commit atomic with conditional writes; a local filesystem has none (Icechunk warns so),
    so commits to a file:// store, from any run on this machine, take an flock in turn.
    Batches write forks only (chunks under new names) and need no lock."""
    scheme, _, rest = url.partition("://")
    if scheme != "file":
        yield
        return
    with exclusive(store_commit_lock(Path(rest).absolute())):
        yield


def published_snapshot(repo: Any, cycle: str) -> str | None:
    """The snapshot main published the cycle as, or None when main does not hold it."""
    tag = store_tag(cycle)
    if tag not in repo.list_tags():
        return None
    tagged = repo.lookup_tag(tag)
    return tagged if any(s.id == tagged for s in repo.ancestry(branch="main")) else None


def _ensure_schema(repo: Any, schema: StoreSchema) -> None:
    """First use: create coordinates and empty arrays on main (one commit). Runs that
    start together on a new store race for it: a loser finds the winner's layout."""
    import icechunk

    for attempt in range(5):
        try:
            return _create_layout(repo, schema)
        except icechunk.ConflictError:
            if attempt == 4:
                raise
            log.info("store layout committed meanwhile by another run; reading it again")


def _create_layout(repo: Any, schema: StoreSchema) -> None:
    import zarr

    session = repo.readonly_session("main")
    root = zarr.open_group(store=session.store, mode="r") if _has_root(session) else None
    if root is not None and all(a.name in root for a in schema.arrays):
        return
    session = repo.writable_session("main")
    root = zarr.open_group(store=session.store, mode="a")
    root.attrs.update(schema.attrs)
    if "time" not in root:
        t = root.create_array("time", shape=(0,), chunks=(1024,), dtype="int64",
                              dimension_names=("time",), fill_value=-1)
        t.attrs.update({"units": schema.time_units, "calendar": "proleptic_gregorian",
                        "standard_name": "forecast_reference_time"})
    for name, values in schema.coords.items():
        if name not in root:
            c = root.create_array(name, shape=values.shape, dtype=values.dtype,
                                  dimension_names=(name,))
            c[:] = values
            c.attrs.update(schema.coord_attrs.get(name, {}))
    for spec in schema.arrays:
        if spec.name in root:
            continue
        a = root.create_array(spec.name, shape=(0, *spec.shape), dtype="float32",
                              chunks=(1, 1, *spec.shape[1:]), fill_value=np.nan,
                              dimension_names=("time", *spec.dims))
        a.attrs.update(spec.attrs)
    if session.has_uncommitted_changes:  # else another run's layout landed in between
        session.commit("ensflow: create store layout")


def _time_arrays(root: Any) -> list[str]:
    """The data variables along the time axis (every array but `time` and coordinates)."""
    return [name for name, array in root.arrays()
            if name != "time" and array.metadata.dimension_names[:1] == ("time",)]


def _append_time(root: Any, time_value: int) -> int:
    """A new slot at the end of the time axis, every data variable grown with it (NaN)."""
    index = int(root["time"].shape[0])
    root["time"].resize((index + 1,))
    root["time"][index] = time_value
    for name in _time_arrays(root):
        array = root[name]
        array.resize((index + 1, *array.shape[1:]))
    return index


def _has_root(session: Any) -> bool:
    import zarr

    try:
        zarr.open_group(store=session.store, mode="r")
        return True
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False


def setup(repo: Any, schema: StoreSchema, cycle: str, time_value: int,
          record_path: str | Path) -> SetupRecord:
    """Create (or find again) the run branch with arrays grown for this cycle."""
    import zarr

    record_path = Path(record_path)
    if record_path.exists():
        record = SetupRecord.load(record_path)
        log.info("setup of %s re-used from %s", cycle, record_path)
        return record
    _ensure_schema(repo, schema)
    branch = store_branch(cycle)
    main = repo.lookup_branch("main")
    main_times = zarr.open_group(store=repo.readonly_session("main").store,
                                 mode="r")["time"][:].tolist()
    published = published_snapshot(repo, cycle)
    if published:
        # Published before (a re-run after a workflow change): the archive's cycle is final.
        index = main_times.index(time_value)
        record = SetupRecord(cycle, branch, main, published, index, time_value, True)
        receipts.write(record_path, asdict(record))
        log.info("%s is already published as %s; batches will write nothing", cycle, store_tag(cycle))
        return record
    exists = branch in repo.list_branches()
    tip = repo.lookup_branch(branch) if exists else main
    if tip == main and time_value in main_times:
        # The slot is main's already, for another cycle sharing this time: refuse before
        # anything is made, so nothing is left to clean up.
        raise PublishError(f"cycle {cycle}: its time slot (index {main_times.index(time_value)}) "
                           f"in this store is already published, not as {store_tag(cycle)}: "
                           "another cycle with the same time holds it; nothing was written")
    if not exists:
        repo.create_branch(branch, main)
    elif tip != main and next(iter(repo.ancestry(snapshot_id=tip))).parent_id != main:
        raise PublishError(f"{branch} exists and does not start from main ({main}); "
                           "delete it or publish it first")
    session = repo.writable_session(branch)
    root = zarr.open_group(store=session.store, mode="a")
    times = root["time"][:]
    if time_value in times.tolist():  # this branch's own setup commit, found again
        index = int(times.tolist().index(time_value))
    else:
        index = _append_time(root, time_value)
    setup_snapshot = session.commit(f"setup {cycle}") if session.has_uncommitted_changes else tip
    record = SetupRecord(cycle, branch, main, setup_snapshot, index, time_value)
    receipts.write(record_path, asdict(record))
    log.info("setup %s: branch %s from main %s, time index %d", cycle, branch, main, index)
    return record


# What a fork says it wrote: array name -> the members (index along the member axis) whose
# values it filled. Publish checks completeness from these, reading no chunk back.
Coverage = dict[str, list[int]]


def write_fork(repo: Any, record: SetupRecord, write: Callable[[Any, int], Coverage | None],
               fork_path: str | Path) -> None:
    """Write one batch's region into a fork of the run branch and save the fork file with
    the coverage that `write` returns."""
    import zarr

    if record.published or (record.branch not in repo.list_branches()
                            and published_snapshot(repo, record.cycle)):
        # A member redone after its cycle was published (its receipt removed, say): the
        # archive's cycle is final, so the redone values go to the bucket files only.
        receipts.write(fork_path, {"cycle": record.cycle, "already_published": True})
        log.warning("%s is already published as %s; no fork written, the store keeps the "
                    "published values", record.cycle, store_tag(record.cycle))
        return
    tip = repo.lookup_branch(record.branch)
    if tip != record.setup_snapshot:
        raise PublishError(f"{record.branch} moved since setup ({record.setup_snapshot} -> {tip})")
    fork = repo.writable_session(record.branch).fork()
    coverage = write(zarr.open_group(store=fork.store, mode="r+"), record.time_index) or {}
    fork_path = Path(fork_path)
    fork_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fork_path.with_name(f".{fork_path.name}.{os.getpid()}.part")
    saved = {"cycle": record.cycle, "fork": fork,
             "coverage": {name: sorted(map(int, members)) for name, members in coverage.items()}}
    tmp.write_bytes(pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, fork_path)


def load_fork(path: str | Path) -> dict[str, Any]:
    """A fork file: the Icechunk fork, its cycle and what it wrote."""
    saved = safe_pickle.loads(Path(path).read_bytes(), f"fork file {path}", extra=FORK_ALLOWED)
    if not isinstance(saved, dict) or "coverage" not in saved:
        raise PublishError(f"fork file {path} records no coverage (written by an earlier "
                           "ensflow): delete it and run the same command again")
    return saved


def merged_coverage(forks: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for f in forks:
        for name, members in f["coverage"].items():
            out.setdefault(name, set()).update(members)
    return out


def _commit_of(repo: Any, cycle: str, since: str) -> str | None:
    """The commit on main, made after `since`, that published `cycle` (a publish that died
    before tagging)."""
    for snap in repo.ancestry(branch="main"):
        if snap.id == since:
            return None
        if snap.message.startswith(f"cycle {cycle}:"):
            return str(snap.id)
    return None


def _onto_moved_main(repo: Any, record: SetupRecord, committed: str, tries: int = 5) -> str:
    """Main moved since setup: other cycles were published, and one of them may hold the
    time index this run wrote at. Copy this cycle's slice from its own commit into a new
    slot at the end of main's time axis and commit on main (Icechunk's commit moves main
    only from the tip it read, so a reader sees the cycle whole or not at all)."""
    import icechunk
    import zarr

    if done := _commit_of(repo, record.cycle, record.main_before):
        return done
    source = zarr.open_group(store=repo.readonly_session(snapshot_id=committed).store, mode="r")
    for _ in range(tries):
        session = repo.writable_session("main")
        root = zarr.open_group(store=session.store, mode="a")
        times = root["time"][:].tolist()
        if record.time_value in times:
            raise PublishError(f"cycle {record.cycle}: main holds its time "
                               f"{record.time_value} for another cycle; {record.branch} is "
                               "kept (ensflow purge that cycle's tag, or publish elsewhere)")
        index = _append_time(root, record.time_value)
        for name in _time_arrays(root):
            root[name][index] = source[name][record.time_index]
        try:
            new = session.commit(f"cycle {record.cycle}: onto main, time index {index}")
        except icechunk.ConflictError:
            continue  # yet another cycle landed first: read main again
        log.info("main moved since setup of %s: written at time index %d of main",
                 record.cycle, index)
        return str(new)
    raise PublishError(f"cycle {record.cycle}: main kept moving ({tries} tries); "
                       f"{record.branch} is kept, run the same command again")


def publish(repo: Any, record: SetupRecord, fork_paths: Sequence[str | Path],
            check: Callable[[dict[str, set[int]]], None] | None = None) -> dict[str, Any]:
    """Merge forks, one commit, move main by compare-and-swap, tag, delete the run branch.

    `check` sees what the forks say they wrote (array -> members) and may refuse the cycle;
    no chunk is read back, so publishing costs the same for 5 forks or 50.
    """
    tag = store_tag(record.cycle)
    main = repo.lookup_branch("main")
    tagged = published_snapshot(repo, record.cycle)
    if tagged:
        log.info("%s already published as %s; nothing to do", record.cycle, tagged)
        if record.branch in repo.list_branches():
            repo.delete_branch(record.branch)
        return {"snapshot": tagged, "tag": tag, "already_published": True}
    if tag in repo.list_tags():
        raise PublishError(f"tag {tag} exists but main does not contain it")
    if record.branch not in repo.list_branches():
        raise PublishError(f"{record.branch} is gone and {tag} does not exist")
    tip = repo.lookup_branch(record.branch)
    if tip == record.setup_snapshot:
        forks = [load_fork(p) for p in fork_paths]
        if other := [str(p) for p, f in zip(fork_paths, forks, strict=True)
                     if f["cycle"] != record.cycle]:
            raise PublishError(f"fork file(s) of another cycle: {', '.join(other)}")
        if check is not None:
            check(merged_coverage(forks))
        session = repo.writable_session(record.branch)
        session.merge(*[f["fork"] for f in forks])
        new = session.commit(f"cycle {record.cycle}: {len(fork_paths)} batches")
    else:  # an earlier publish committed, then stopped: carry on from its commit
        first = next(iter(repo.ancestry(snapshot_id=tip)))
        if first.parent_id != record.setup_snapshot:
            raise PublishError(f"{record.branch} moved since setup ({record.setup_snapshot} -> {tip})")
        new = tip
    if main != new:
        moved = main != record.main_before
        if not moved:
            try:
                repo.reset_branch("main", new, from_snapshot_id=record.main_before)
            except Exception:  # main moved while we were about to move it
                moved = True
        if moved:  # another cycle was published meanwhile: put ours on top of it
            new = _onto_moved_main(repo, record, new)
    repo.create_tag(tag, new)
    repo.delete_branch(record.branch)
    log.info("published %s as %s (main %s -> %s)", record.cycle, tag, record.main_before, new)
    return {"snapshot": new, "tag": tag, "main_before": record.main_before,
            "already_published": False}
