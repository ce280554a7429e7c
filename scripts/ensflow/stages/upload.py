"""Stage: a member's GRIB files to the bucket, then a receipt; local copies go with temp()."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
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


def upload_ahead(settings: Settings) -> bool:
    """Whether a forecast job sends its windows as they are done (`forecast.upload_ahead`)."""
    return (settings.handed("forecast.upload_ahead") and settings.handed("bucket")
            and bool(settings.forecast.upload_ahead))


class UploadAhead:
    """A member's finished GRIB windows sent to the bucket while its runner goes on.

    The upload job then finds each object there with the window's size and crc32c and
    skips it, so after a member's last step only its last window is left to send (by the
    upload job, beside the next member's inference), not eleven.
    Best effort: a failure is logged and the window left to the upload job and its retries;
    the upload receipt stays the one proof that a member is in the bucket.
    """

    def __init__(self, settings: Settings, member: int) -> None:
        self.settings = settings
        self.what = f"member {member_id(member)}"
        self.storage = Storage.from_settings(settings)
        self.queue: queue.Queue[Path | None] = queue.Queue()
        self.sent: list[Transfer] = []
        self.failed: list[str] = []
        self.busy_s = 0.0
        self.abandoned = False
        self.thread = threading.Thread(target=self._send_all, name="upload-ahead", daemon=True)
        self.thread.start()

    def send(self, path: Path) -> None:
        """`path` is whole: send it when the ones before it have gone."""
        self.queue.put(path)

    def _send_all(self) -> None:
        while (path := self.queue.get()) is not None:
            if self.abandoned:
                continue
            url = forecast_object(self.settings.bucket, self.settings.cycle, path.name)
            t0 = time.perf_counter()
            try:
                sent = self.storage.put_file(path, url)
            except Exception as exc:  # the upload job sends it
                self.failed.append(path.name)
                level, message = logging.WARNING, (f"{self.what}: sending {path.name} ahead "
                                                   f"failed, the upload job will: {exc}")
            else:
                self.sent.append(sent)
                level, message = logging.INFO, (
                    f"{self.what}: {'found' if sent.skipped else 'sent'} {sent.info.url} "
                    f"({sent.info.size / 1e6:.1f} MB) ahead of the upload job")
            self.busy_s += time.perf_counter() - t0
            with contextlib.suppress(Exception):  # a job gone away stops the runner, not this
                log.log(level, "%s", message)

    def finish(self) -> str:
        """Wait for a window still on its way (sent a window's steps ago, so rarely); what
        was sent, for the job's log."""
        t0 = time.perf_counter()
        self.queue.put(None)
        self.thread.join()
        size = sum(t.info.size for t in self.sent)
        summary = (f"{len(self.sent)} window(s) in the bucket ahead of the upload job "
                   f"({size / 1e6:.1f} MB, {self.busy_s:.1f}s beside the runner and "
                   f"{time.perf_counter() - t0:.1f}s after it)")
        if self.failed:
            summary += f"; left to the upload job: {', '.join(self.failed)}"
        return summary

    def abandon(self) -> None:
        """The member failed: send nothing more (the window in flight completes)."""
        self.abandoned = True
        self.queue.put(None)
        self.thread.join()


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

