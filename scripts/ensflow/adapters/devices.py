"""One member per GPU: a device slot per forecast process, chosen before CUDA starts.

Snakemake's `gpu` resource says how many inferences may run at once, not which device
each gets. Each forecast job takes a slot with an flock (released by the kernel when the
process ends, even on kill -9) and sees only its device through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ensflow.errors import EnsflowError

log = logging.getLogger(__name__)


def visible_devices(configured: int | None) -> list[str]:
    """Devices this machine offers: the config's count, else CUDA_VISIBLE_DEVICES, else none."""
    if configured:
        return [str(i) for i in range(configured)]
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return [d for d in env.split(",") if d] if env else []


class Slot(NamedTuple):
    """Where one inference runs: a device (None: the CPU) and which of its slots."""

    device: str | None
    index: int

    @property
    def name(self) -> str:
        return "cpu" if self.device is None else f"gpu{self.device}.slot{self.index}"


@contextlib.contextmanager
def device_slot(devices: list[str], per_device: int, lock_dir: str | Path,
                poll_s: float = 0.5, timeout_s: float = 24 * 3600) -> Iterator[Slot]:
    """Hold one slot (device, k) for the block (device None without devices)."""
    if not devices:
        yield Slot(None, 0)
        return
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while True:
        for k in range(per_device):
            for device in devices:
                f = open(lock_dir / f"gpu{device}.slot{k}.lock", "a+")  # noqa: SIM115 (held below)
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.close()
                    continue
                previous = os.environ.get("CUDA_VISIBLE_DEVICES")
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                log.info("using GPU %s (slot %d of %d)", device, k + 1, per_device)
                try:
                    yield Slot(device, k)
                finally:
                    if previous is None:
                        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                    else:
                        os.environ["CUDA_VISIBLE_DEVICES"] = previous
                    fcntl.flock(f, fcntl.LOCK_UN)
                    f.close()
                return
        if time.monotonic() - started > timeout_s:
            raise EnsflowError(f"no free GPU slot among {devices} after {timeout_s:.0f}s")
        time.sleep(poll_s)
