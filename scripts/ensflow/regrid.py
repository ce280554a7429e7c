"""Regridding in one place (mir, offline), so the interpolation library can be swapped."""

from __future__ import annotations

import os
from pathlib import Path

_OUT_HEADROOM = 1024 * 1024


def _ensure_cache() -> None:
    """mir caches interpolation weights; keep them in a stable per-user place."""
    if "MIR_CACHE_PATH" not in os.environ:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ensflow" / "mir"
        path.mkdir(parents=True, exist_ok=True)
        os.environ["MIR_CACHE_PATH"] = str(path)


def regrid_message(buf: bytes, grid: str, interpolation: str = "linear") -> bytes:
    """One GRIB message onto `grid` (e.g. "O48", "N320", "1.5/1.5"); GRIB out."""
    _ensure_cache()
    import mir

    job = mir.Job(grid=grid, interpolation=interpolation)
    size = max(4 * len(buf), 8 * _gridpoints_hint(grid)) + _OUT_HEADROOM
    out = bytearray(size)
    sink = mir.GribMemoryOutput(out)
    job.execute(mir.GribMemoryInput(buf), sink)
    return bytes(out[: len(sink)])


def _gridpoints_hint(grid: str) -> int:
    """An upper bound on points, to size mir's output buffer."""
    kind, digits = grid[:1].upper(), grid[1:]
    if kind in "ONF" and digits.isdigit():
        n = int(digits)
        return 4 * n * n + 36 * n if kind == "O" else 8 * n * n
    if "/" in grid:
        dx = float(grid.split("/")[0])
        return int((360 / dx + 1) * (180 / dx + 1))
    return 2_000_000
