"""A forecast's finished GRIB windows sent to the bucket while its runner goes on.

The upload stage stays the one that proves a member is in the bucket (its receipt); this
only moves bytes early, so the upload job finds them there and checks them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path

from ensflow.adapters.storage import Storage, Transfer
from ensflow.config import Settings
from ensflow.cycle import member_id
from ensflow.layout import forecast_object

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
