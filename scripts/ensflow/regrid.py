"""Regridding in one place (mir, offline), so the interpolation library can be swapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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


def bilinear_regular(values: np.ndarray, lats: np.ndarray, lons: np.ndarray,
                     new_lats: np.ndarray, new_lons: np.ndarray) -> np.ndarray:
    """Bilinear interpolation between regular lat/lon grids on the last two axes (NaN-aware)."""
    import numpy as np
    from scipy.interpolate import RegularGridInterpolator

    lat_order = np.argsort(lats)
    lon_order = np.argsort(lons)
    src = np.asarray(values)[..., lat_order, :][..., lon_order]
    lead = src.shape[:-2]
    flat = src.reshape(-1, *src.shape[-2:])
    glat, glon = np.meshgrid(new_lats, new_lons, indexing="ij")
    points = np.stack([glat.ravel(), glon.ravel()], axis=-1)
    out = np.empty((flat.shape[0], new_lats.size, new_lons.size), dtype=np.float32)
    for i, field in enumerate(flat):
        interp = RegularGridInterpolator((lats[lat_order], lons[lon_order]), field,
                                         method="linear", bounds_error=True)
        out[i] = interp(points).reshape(new_lats.size, new_lons.size)
    return out.reshape(*lead, new_lats.size, new_lons.size)
