"""The per-cycle run report (being written)."""

from __future__ import annotations

from pathlib import Path

from .config import Settings


def write_run_report(settings: Settings, workdir: Path) -> Path | None:
    return None
