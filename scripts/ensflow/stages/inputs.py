"""Stage: per-member input states, open data → bucket → local scratch."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ensflow import receipts
from ensflow.adapters import checkpoint_info, opendata_requests, safe_pickle
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.storage import Storage
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime, member_id
from ensflow.errors import InputStateError
from ensflow.layout import Layout, input_filename, input_object
from ensflow.ops import scratch
from ensflow.provenance import record
from ensflow.science import input_state

log = logging.getLogger(__name__)


def prepare_input(settings: Settings, member: int, receipt_path: str | Path) -> None:
    """Build a member's input state from open data and put its pickle in the bucket."""
    info = checkpoint_info.read(settings.checkpoint)
    od = settings.opendata
    date = cycle_datetime(settings.cycle)
    storage = Storage.from_settings(settings)
    state = input_state.build(storage, info, date, member,
                              OpenDataLayout.from_settings(settings.opendata))
    url = input_object(settings.bucket, settings.cycle, member)
    workdir = Path(Layout(scratch=settings.scratch).prepare_dir(settings.cycle))
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{input_filename(member)}.{os.getpid()}"
    try:
        tmp.write_bytes(safe_pickle.dumps(state))
        sent = storage.put_file(tmp, url)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("member %s: %s (%.1f MB, %s)", member_id(member), url, sent.info.size / 1e6,
             "already there" if sent.skipped else f"{sent.seconds:.1f}s")
    receipts.write(receipt_path, {
        "cycle": settings.cycle, "member": member, "object": sent.info.url,
        "size": sent.info.size, "crc32c": sent.info.crc32c, "skipped": sent.skipped,
        "fields": [f.name for f in info.input_fields], "grid": info.grid,
        "sources": [r.describe() for d in input_state.input_dates(date, info.timestep_hours)
                    for r in opendata_requests.for_member(info, d, member)],
        "dates": [d.isoformat() for d in input_state.input_dates(
            cycle_datetime(settings.cycle), info.timestep_hours)],
        "provenance": record(settings, opendata_root=od.root),
    })


def fetch_input(settings: Settings, member: int, input_receipt: str | Path,
                local_pkl: str | Path) -> None:
    """Bring a member's pickle to scratch, within the window, and check it before inference."""
    local_pkl = Path(local_pkl)
    directory = local_pkl.parent
    scratch.claim(directory, settings.window)
    what = f"member {member_id(member)} ({local_pkl.name})"
    try:
        source = receipts.read(input_receipt)
        got = Storage.from_settings(settings).get_file(source["object"], local_pkl)
        if source.get("crc32c") and got.crc32c != source["crc32c"]:
            raise InputStateError(f"{what}: checksum {got.crc32c} does not match the bucket "
                                  f"receipt {source['crc32c']} (changed since it was prepared?)")
        info = checkpoint_info.read(settings.checkpoint)
        input_state.load(str(local_pkl), info, what)
        log.info("%s: %.1f MB on scratch, checked against %d checkpoint fields", what,
                 got.size / 1e6, len(info.input_fields))
    except BaseException:
        local_pkl.unlink(missing_ok=True)
        raise
    finally:
        scratch.release_claim(directory)
