"""Stage: a member's GRIB files to the bucket, then a receipt; local copies go with temp()."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ensflow import receipts
from ensflow.adapters import checkpoint_info
from ensflow.adapters.storage import Storage, Transfer
from ensflow.config import Settings
from ensflow.cycle import member_id
from ensflow.layout import forecast_object
from ensflow.provenance import record

log = logging.getLogger(__name__)


def upload_member(settings: Settings, member: int, files: list[str | Path],
                  receipt_path: str | Path, input_receipt: str | Path | None = None,
                  checkpoint_record: str | Path | None = None) -> None:
    started = time.perf_counter()
    pairs = [(Path(f), forecast_object(settings.bucket, settings.cycle, Path(f).name)) for f in files]
    total = sum(p.stat().st_size for p, _ in pairs)
    done: list[int] = []

    def progress(t: Transfer) -> None:
        done.append(t.info.size)
        log.info("member %s: %s %s (%.1f MB, %d/%d)", member_id(member),
                 "already there" if t.skipped else "uploaded", t.info.url, t.info.size / 1e6,
                 len(done), len(pairs))

    results = Storage.from_settings(settings).put_files(pairs, progress=progress)
    elapsed = time.perf_counter() - started
    log.info("member %s: %.1f MB in %.1fs (%.1f MB/s)", member_id(member), total / 1e6, elapsed,
             total / 1e6 / max(elapsed, 1e-6))
    info = checkpoint_info.read(settings.checkpoint)
    receipts.write(receipt_path, {
        "cycle": settings.cycle,
        "member": member,
        "objects": [{"url": r.info.url, "size": r.info.size, "crc32c": r.info.crc32c,
                     "skipped": r.skipped} for r in results],
        "bytes": total,
        "seconds": round(elapsed, 3),
        "provenance": record(
            settings,
            checkpoint=settings.checkpoint,
            checkpoint_sha256=(receipts.read(checkpoint_record)["sha256"]
                               if checkpoint_record else None),
            demo_model=info.demo_model,
            input=receipts.read(input_receipt)["object"] if input_receipt else None,
        ),
    })

