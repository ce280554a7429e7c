"""`ensflow purge`: remove one cycle's data by lineage, and prove it is gone.

What a cycle wrote is known, not guessed: the receipts name its bucket objects, ensflow's
own names find the objects of an interrupted upload, and the rules write under four local
directories named after the cycle. Anything else under the cycle's prefix is someone
else's and stays. The bytes reported as freed are those verified gone afterwards, never
the bytes asked for, because an operator's earlier script said "deleted" and left 105 GB.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ensflow import receipts
from ensflow.adapters.storage import ObjectInfo, Storage
from ensflow.config import Settings
from ensflow.errors import EnsflowError, StorageError
from ensflow.layout import (
    Layout,
    cycle_object,
    cycle_of_object,
    join_url,
    mirror_dir,
    store_tag,
)
from ensflow.ops.run_record import mirror_from_storage
from ensflow.ops.runlock import active_pids
from ensflow.provenance import code_version

Kind = Literal["receipted", "unreceipted", "workflow", "local"]
STORE_NOTE = (
    "Icechunk stores are archives of many cycles: purge keeps them. Retiring a cycle there "
    "means deleting its tag, expiring old snapshots and collecting garbage, a separate "
    "operation on the whole store."
)


class CycleInUseError(EnsflowError):
    """A live run is working on the cycle asked to be purged."""


@dataclass(frozen=True)
class Item:
    """One thing to delete: an object URL or a local file, with its size now."""

    kind: Kind
    location: str
    size: int
    note: str = ""


ARCHIVE, FOREIGN, DEMO = "kept (archive)", "not ours, kept", "kept (demo input)"


@dataclass(frozen=True)
class Kept:
    """Something near the cycle's data that purge leaves alone on purpose, and why."""

    location: str
    reason: str  # ARCHIVE, FOREIGN or DEMO
    detail: str = ""


@dataclass
class PurgePlan:
    """Everything `--yes` would delete, and what it leaves alone on purpose."""

    cycle: str
    workdir: Path
    prefixes: list[str]
    storage: Storage  # the buckets, as the config reaches them
    receipted: list[Item] = field(default_factory=list)
    unreceipted: list[Item] = field(default_factory=list)
    workflow: list[Item] = field(default_factory=list)  # Snakemake's files under a storage prefix
    workflow_receipts: str | None = None  # where the receipts among them live
    local: list[Item] = field(default_factory=list)
    local_roots: list[Path] = field(default_factory=list)
    receipt_dir: Path | None = None
    gone: list[str] = field(default_factory=list)  # in a receipt, no longer in the bucket
    kept: list[Kept] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    record_path: Path | None = None

    @property
    def bucket_items(self) -> list[Item]:
        return self.receipted + self.unreceipted

    @property
    def items(self) -> list[Item]:
        return self.bucket_items + self.workflow + self.local

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.items)

    @property
    def empty(self) -> bool:
        return not self.items and not self.local_roots


@dataclass
class PurgeResult:
    """What `--yes` achieved, judged by looking again rather than by what was asked."""

    plan: PurgePlan
    freed: list[Item]
    remaining: list[Item]
    leftovers: list[str]  # not planned but still in the way: a directory that is not empty
    errors: list[str]
    record_path: Path | None = None

    @property
    def freed_bytes(self) -> int:
        return sum(i.size for i in self.freed)

    @property
    def remaining_bytes(self) -> int:
        return sum(i.size for i in self.remaining)

    @property
    def complete(self) -> bool:
        return not self.remaining and not self.leftovers


# ---------------------------------------------------------------- locations


def absolute_url(url: str, workdir: Path) -> str:
    """file:// URLs are relative to the run's directory; make them independent of ours."""
    scheme, _, rest = url.partition("://")
    if scheme != "file":
        return url
    path = Path(rest)
    if not path.is_absolute():
        path = workdir / path
    return "file://" + os.path.normpath(path)


def local_path(path: str | Path, workdir: Path) -> Path:
    """Config paths are the run's, relative to its directory."""
    p = Path(path)
    return Path(os.path.normpath(p if p.is_absolute() else workdir / p))


def _file_url_path(url: str) -> Path | None:
    scheme, _, rest = url.partition("://")
    return Path(rest) if scheme == "file" else None


def cycle_prefix(bucket_url: str, cycle: str, workdir: Path) -> str:
    return join_url(absolute_url(bucket_url, workdir), cycle) + "/"


# ---------------------------------------------------------------- plan


def _receipt_urls(path: Path) -> list[str]:
    return [o["url"] for o in receipts.objects(receipts.read(path))]


def _list(storage: Storage, prefix: str) -> list[ObjectInfo]:
    try:
        return storage.list_prefix(prefix)
    except EnsflowError:
        raise
    except Exception as exc:
        raise StorageError(f"cannot list {prefix}: {type(exc).__name__}: {str(exc)[:200]}") from None


def _walk(root: Path, skip: list[Path]) -> tuple[list[tuple[Path, int]], list[Path]]:
    """Files under root (symbolic links as themselves, never followed) and skipped subtrees."""
    if root.is_symlink() or not root.is_dir():
        return [(root, root.lstat().st_size)], []
    files: list[tuple[Path, int]] = []
    skipped: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            p = here / d
            if any(p == s or s in p.parents for s in skip):
                dirnames.remove(d)
                skipped.append(p)
            elif p.is_symlink():
                dirnames.remove(d)
                files.append((p, p.lstat().st_size))
        files.extend((here / f, (here / f).lstat().st_size) for f in filenames)
    return sorted(files), skipped


def _stores(settings: Settings, workdir: Path, source: Path) -> list[Kept]:
    kept = []
    layout, cycle = Layout.of(settings), settings.cycle
    for stage, section, record in (("cgan", settings.cgan, layout.cgan_published(cycle)),
                                   ("quest", settings.quest, layout.quest_published(cycle))):
        published = source / record
        tag = store_tag(cycle)
        if published.is_file():
            rec = receipts.read(published)
            store, tag = rec.get("store", section.store), rec.get("tag", tag)
            why = f"{stage} store, tag {tag}, snapshot {rec.get('snapshot', '?')}"
        elif section.enabled:
            store = section.store
            why = f"{stage} store, tag {tag} if this cycle was published"
        else:
            continue
        kept.append(Kept(absolute_url(store, workdir), ARCHIVE, why))
    return kept


def _demo_inputs(settings: Settings, workdir: Path, source: Path) -> list[Kept]:
    if not settings.synthetic:
        return []
    root = settings.opendata.root
    dirs: set[str] = set()
    mirror = source / Layout.of(settings).demo_mirror_record(settings.cycle)
    if mirror.is_file() and root.startswith("file://"):
        base = root.removeprefix("file://").rstrip("/") + "/"
        for obj in receipts.read(mirror).get("objects", []):
            if obj.startswith(base):
                dirs.add(join_url(root, obj.removeprefix(base).split("/", 1)[0]))
    why = "synthetic input shared by cycles, not an output of the member chain"
    kept = [Kept(absolute_url(d, workdir), DEMO, why) for d in sorted(dirs or {root})]
    if settings.checkpoint:
        kept.append(Kept(str(local_path(settings.checkpoint, workdir)), DEMO, why))
    return kept


def plan_purge(settings: Settings, workdir: Path, storage_prefix: str | None = None) -> PurgePlan:
    """Find the cycle's lineage: receipted objects, unreceipted ensflow objects, local dirs.

    With `storage_prefix` (a cluster run: Snakemake's files in a bucket), the cycle's
    receipts are read from there and its results, logs and benchmarks there are part of it.
    """
    workdir = Path(os.path.abspath(workdir))
    layout, cycle = Layout.of(settings), settings.cycle
    configured = cycle_prefix(settings.bucket, cycle, workdir)
    mirror = mirror_dir(workdir, cycle)
    source = workdir  # where the run's receipts and publish records are read
    workflow_prefixes: list[str] = []
    if storage_prefix:
        sp = storage_prefix.rstrip("/")
        workflow_prefixes = [f"{sp}/{root.strip('/')}/" for root in layout.workflow_roots(cycle)]
        source = mirror_from_storage(sp, settings, workdir)  # as the run left them
    receipt_dir = source / layout.receipts(cycle)
    storage = Storage.from_settings(settings)
    plan = PurgePlan(cycle=cycle, workdir=workdir, prefixes=[configured], storage=storage,
                     receipt_dir=receipt_dir,
                     active=active_pids(workdir, cycle),
                     record_path=local_path(layout.purge_record(cycle), workdir))
    if storage_prefix:
        plan.workflow_receipts = f"{storage_prefix.rstrip('/')}/{layout.receipts(cycle).strip('/')}/"

    receipted: dict[str, str] = {}  # url -> receipt file name
    for path in layout.receipt_files(source, cycle):
        try:
            urls = _receipt_urls(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            plan.warnings.append(f"receipt {path} unreadable ({exc}); its objects are found "
                                 "by name only")
            continue
        for url in urls:
            receipted.setdefault(absolute_url(url, workdir), path.name)
    for url in receipted:
        prefix = cycle_of_object(url, cycle)
        if prefix and prefix not in plan.prefixes:
            plan.prefixes.append(prefix)
            plan.warnings.append(f"receipts name objects under {prefix}, not under the configured "
                                 f"bucket's {configured}: purging both")

    listed: dict[str, int] = {}
    for prefix in plan.prefixes:
        for info in _list(storage, prefix):
            listed[info.url] = info.size
            relative = info.url.removeprefix(prefix)
            if info.url in receipted:
                continue
            if cycle_object(relative, cycle):
                plan.unreceipted.append(Item("unreceipted", info.url, info.size, "no receipt"))
            else:
                plan.kept.append(Kept(info.url, FOREIGN, f"{info.size} bytes"))
    for url, receipt in receipted.items():
        size = listed.get(url)
        if size is None:
            found = storage.stat(url)
            if found is None:
                plan.gone.append(url)
                continue
            size = found.size
        plan.receipted.append(Item("receipted", url, size, receipt))

    for prefix in workflow_prefixes:
        plan.workflow.extend(Item("workflow", info.url, info.size, "Snakemake's file")
                             for info in _list(storage, prefix))
    stores = _stores(settings, workdir, source)
    plan.kept.extend(stores)
    store_dirs = [p for k in stores if (p := _file_url_path(k.location))]
    bucket_dirs = [p for prefix in plan.prefixes if (p := _file_url_path(prefix.rstrip("/")))]
    roots = [*(local_path(r, workdir) for r in layout.cycle_roots(cycle)), mirror]
    for root in dict.fromkeys(roots):
        if not os.path.lexists(root) or any(r in root.parents for r in plan.local_roots):
            continue
        if any(root == b or root in b.parents or b in root.parents for b in bucket_dirs):
            plan.warnings.append(f"{root} overlaps the file:// bucket; left to the bucket listing")
            continue
        plan.local_roots.append(root)
        files, skipped = _walk(root, store_dirs)
        plan.local.extend(Item("local", str(p), size) for p, size in files)
        plan.kept.extend(Kept(str(s), ARCHIVE, "an Icechunk store") for s in skipped)
    plan.kept.extend(_demo_inputs(settings, workdir, source))
    return plan


# ---------------------------------------------------------------- execute


def _unlink(path: Path) -> None:
    path.unlink()


def _rmdir(path: Path) -> None:
    path.rmdir()


def _prune_dirs(root: Path) -> None:
    """Remove directories left empty under root (and root); non-empty ones stay."""
    if root.is_symlink() or not root.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        with contextlib.suppress(OSError):
            _rmdir(Path(dirpath))


def _parallel(fn: Callable[[Item], str | None], items: list[Item]) -> list[str | None]:
    if not items:
        return []
    with ThreadPoolExecutor(max(1, min(8, len(items)))) as pool:
        return list(pool.map(fn, items))


def _delete_object(storage: Storage, item: Item) -> str | None:
    try:
        storage.delete(item.location)
    except Exception as exc:
        return f"{item.location}: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def _still_there(storage: Storage, item: Item) -> str | None:
    """'' when the object is gone, else why it counts as still there."""
    try:
        return "" if storage.stat(item.location) is None else "still in the bucket"
    except Exception as exc:
        return f"could not check ({type(exc).__name__}: {str(exc)[:120]})"


def execute_purge(plan: PurgePlan) -> PurgeResult:
    """Delete the plan's objects, then its local files; report only what is verified gone."""
    active = active_pids(plan.workdir, plan.cycle)
    if active:
        raise CycleInUseError(
            f"cycle {plan.cycle} is in use by a live run in {plan.workdir} "
            f"(pid {', '.join(map(str, active))}); nothing deleted")
    def delete(item: Item) -> str | None:
        return _delete_object(plan.storage, item)

    def still_there(item: Item) -> str | None:
        return _still_there(plan.storage, item)

    errors = [e for e in _parallel(delete, plan.bucket_items) if e]
    for prefix in plan.prefixes:
        if (path := _file_url_path(prefix.rstrip("/"))) is not None:
            _prune_dirs(path)
    checks = _parallel(still_there, plan.bucket_items)
    freed = [i for i, c in zip(plan.bucket_items, checks, strict=True) if c == ""]
    remaining = [Item(i.kind, i.location, i.size, c or "")
                 for i, c in zip(plan.bucket_items, checks, strict=True) if c]

    # Receipts are the only record of where an object lives: while one remains, keep them.
    keep_under = plan.receipt_dir if remaining else None
    if plan.workflow:
        keep_url = plan.workflow_receipts if remaining else None
        wanted = [i for i in plan.workflow if not (keep_url and i.location.startswith(keep_url))]
        errors += [e for e in _parallel(delete, wanted) if e]
        checks = _parallel(still_there, plan.workflow)
        for item, check in zip(plan.workflow, checks, strict=True):
            if check == "":
                freed.append(item)
            else:
                note = ("kept: receipt of an object still in the bucket" if item not in wanted
                        else check)
                remaining.append(Item(item.kind, item.location, item.size, note))
    for item in plan.local:
        path = Path(item.location)
        if keep_under is not None and keep_under in path.parents:
            continue
        try:
            _unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
    for root in plan.local_roots:
        _prune_dirs(root)
    for item in plan.local:
        if os.path.lexists(item.location):
            kept = keep_under is not None and keep_under in Path(item.location).parents
            remaining.append(Item(item.kind, item.location, item.size,
                                  "kept: receipt of an object still in the bucket" if kept
                                  else "still on disk"))
        else:
            freed.append(item)
    planned = {Path(i.location) for i in plan.local}
    left = {Path(i.location) for i in remaining if i.kind == "local"}
    leftovers = []
    for root in plan.local_roots:
        if os.path.lexists(root):
            extra = sorted(str(p) for p in (root.rglob("*") if root.is_dir() else [])
                           if not p.is_dir() and p not in planned)
            if not extra and not any(root == p or root in p.parents for p in left):
                extra = [f"{root}/ (directory still there)"]
            leftovers.extend(extra)
    result = PurgeResult(plan, freed, remaining, leftovers, errors)
    result.record_path = _write_record(result)
    return result


def _write_record(result: PurgeResult) -> Path | None:
    plan = result.plan
    if plan.record_path is None:
        return None
    record: dict[str, Any] = {
        "cycle": plan.cycle,
        "workdir": str(plan.workdir),
        "prefixes": plan.prefixes,
        "purged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "complete": result.complete,
        "planned_bytes": plan.total_bytes,
        "freed_bytes": result.freed_bytes,
        "remaining_bytes": result.remaining_bytes,
        "deleted": [{"kind": i.kind, "location": i.location, "size": i.size} for i in result.freed],
        "remaining": [{"kind": i.kind, "location": i.location, "size": i.size, "why": i.note}
                      for i in result.remaining],
        "leftovers": result.leftovers,
        "errors": result.errors,
        "kept": [{"location": k.location, "reason": k.reason, "detail": k.detail} for k in plan.kept],
    }
    if plan.record_path.is_file():  # an earlier, partial purge: keep its account too
        with contextlib.suppress(OSError, ValueError):
            earlier = json.loads(plan.record_path.read_text())
            record["earlier"] = [*earlier.pop("earlier", []), earlier]
    receipts.write(plan.record_path, record)
    return plan.record_path


# ---------------------------------------------------------------- report


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def _items(title: str, items: list[Item], out: list[str]) -> None:
    if not items:
        return
    out.append(f"{title} ({len(items)}, {sum(i.size for i in items)} bytes, "
               f"{_gb(sum(i.size for i in items))}):")
    out.extend(f"  {i.size:>14}  {i.location}" + (f"  ({i.note})" if i.note else "") for i in items)


def _kept_line(k: Kept) -> str:
    return f"  {k.reason}: {k.location}" + (f"  ({k.detail})" if k.detail else "")


def format_plan(plan: PurgePlan, delete: bool) -> str:
    out = [f"cycle {plan.cycle} in {plan.workdir}: "
           + ("deleting" if delete else "dry-run, nothing is deleted (add --yes to delete)")]
    if plan.active:
        out.append(f"IN USE: a live run works on this cycle (pid {', '.join(map(str, plan.active))}); "
                   "--yes will refuse until it ends")
    out.append("bucket prefix" + ("es" if len(plan.prefixes) > 1 else "") + ": "
               + ", ".join(plan.prefixes))
    out.extend(f"warning: {w}" for w in plan.warnings)
    _items("bucket objects with a receipt", plan.receipted, out)
    _items("bucket objects without a receipt (ensflow's names; an upload was interrupted)",
           plan.unreceipted, out)
    _items("Snakemake's files of the cycle under the storage prefix", plan.workflow, out)
    _items("local files", plan.local, out)
    if plan.local_roots:
        out.append("local directories removed with them: " + ", ".join(map(str, plan.local_roots)))
    if plan.gone:
        out.append(f"in a receipt but already gone from the bucket ({len(plan.gone)}):")
        out.extend(f"  {u}" for u in plan.gone)
    if plan.kept:
        out.append("kept:")
        out.extend(_kept_line(k) for k in plan.kept)
        if any(k.reason == ARCHIVE for k in plan.kept):
            out.append(STORE_NOTE)
    out.append(f"total: {len(plan.items)} items, {plan.total_bytes} bytes ({_gb(plan.total_bytes)})"
               + ("" if delete else " would be freed"))
    return "\n".join(out)


def format_result(result: PurgeResult) -> str:
    out = []
    if result.remaining or result.leftovers:
        out.append(f"NOT everything is gone: {len(result.remaining)} planned items remain, "
                   f"{result.remaining_bytes} bytes ({_gb(result.remaining_bytes)}):")
        out.extend(f"  {i.size:>14}  {i.location}  ({i.note})" for i in result.remaining)
        if result.leftovers:
            out.append("also still there (not in the plan):")
            out.extend(f"  {p}" for p in result.leftovers)
    out.extend(f"error: {e}" for e in result.errors)
    out.append(f"freed {result.freed_bytes} bytes ({_gb(result.freed_bytes)}) of "
               f"{result.plan.total_bytes} planned")
    if result.record_path:
        out.append(f"record: {result.record_path}")
    return "\n".join(out)


def main_purge(settings: Settings, workdir: Path, delete: bool, storage_prefix: str | None = None) -> int:
    """Dry-run by default; with delete, refuse a live cycle and exit 1 unless all is gone."""
    plan = plan_purge(settings, workdir, storage_prefix)
    if plan.empty:
        msg = (f"cycle {plan.cycle}: nothing to purge (no receipts, no ensflow objects under "
               f"{', '.join(plan.prefixes)}, no local directories)")
        if plan.record_path and plan.record_path.is_file():
            when = json.loads(plan.record_path.read_text()).get("purged_at", "?")
            msg += f"; purged at {when}, see {plan.record_path}"
        print(msg)
        out = [_kept_line(k) for k in plan.kept if k.reason == FOREIGN]
        if out:
            print("kept:\n" + "\n".join(out))
        print(f"freed 0 bytes ({_gb(0)}) of 0 planned")
        return 0
    if delete and plan.active:
        print(format_plan(plan, delete=False))
        raise CycleInUseError(
            f"cycle {plan.cycle} is in use by a live run in {plan.workdir} "
            f"(pid {', '.join(map(str, plan.active))}); nothing deleted")
    print(format_plan(plan, delete), flush=True)
    if not delete:
        return 0
    result = execute_purge(plan)
    print(format_result(result))
    return 0 if result.complete else 1
