"""Regridding in one place (mir, offline), so the interpolation library can be swapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _read_eckit_csr(path: Path, shape: tuple[int, int]) -> Any | None:
    """mir's cached weights (eckit SparseMatrix: rows, cols, nnz, then CSR arrays)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    data = path.read_bytes()
    pos, ints, blobs = 0, [], []
    try:
        while pos < len(data):
            tag = data[pos]
            pos += 1
            if tag in (0x05, 0x0A):
                ints.append(int.from_bytes(data[pos:pos + 4], "big"))
                pos += 4
            elif tag == 0x15:
                n = int.from_bytes(data[pos:pos + 8], "big")
                blobs.append(data[pos + 8:pos + 8 + n])
                pos += 8 + n
            else:
                return None
            if len(ints) == 2 and tuple(ints) != shape:
                return None  # another grid pair: stop early
        rows, cols, nnz, _, index_size, scalar_size = ints[:6]
        if (index_size, scalar_size) != (4, 8) or len(blobs) != 3:
            return None
        outer = np.frombuffer(blobs[0], "<i4")
        inner = np.frombuffer(blobs[1], "<i4")
        values = np.frombuffer(blobs[2], "<f8")
        if outer.size != rows + 1 or inner.size != nnz or values.size != nnz:
            return None
        return csr_matrix((values, inner, outer), shape=(rows, cols))
    except (ValueError, IndexError):
        return None


def weights_for(sample: bytes, grid: str, interpolation: str) -> Any | None:
    """The sparse matrix mir uses for this grid pair and method, checked on `sample`.

    mir computes and caches its interpolation weights; applying them ourselves as one
    sparse product regrids float fields without a GRIB round trip and many fields at
    once. The matrix is used only if it reproduces mir's own output for the sample
    (within the output's packing precision); otherwise None, and callers use mir per field.
    """
    import numpy as np

    from ensflow.adapters.grib_decode import decode

    reference = decode(regrid_message(sample, grid, interpolation), "mir reference")
    x = decode(sample, "regrid sample")
    tolerance = max(float(np.ptp(reference)), 1e-12) / 2**14
    root = Path(os.environ["MIR_CACHE_PATH"])
    candidates = [p for p in root.rglob("*.mat") if f"/{interpolation}/" in str(p)]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        matrix = _read_eckit_csr(path, (reference.size, x.size))
        if matrix is not None and np.abs(matrix @ x - reference).max() <= tolerance:
            return matrix
    return None


class WeightsRegridder:
    """GRIB fields onto `grid` as floats: decoded, then mir's own cached weights applied as
    one sparse product. No GRIB is written on the target grid and decoded again (that
    round trip was two thirds of a member's input preparation at N320). Per field, mir
    itself where the weights cannot be read and checked, or the field has missing values
    (mir treats those specially)."""

    def __init__(self, grid: str, interpolation: str = "linear") -> None:
        self.grid, self.interpolation = grid, interpolation
        self._weights: dict[int, Any] = {}  # source points -> matrix (None: use mir)

    def values(self, buf: bytes, what: str) -> np.ndarray:
        import numpy as np

        from ensflow.adapters.grib_decode import decode

        x = decode(buf, what)
        if not np.isnan(x).any():
            if x.size not in self._weights:
                self._weights[x.size] = weights_for(buf, self.grid, self.interpolation)
            matrix = self._weights[x.size]
            if matrix is not None:
                return np.asarray(matrix @ x)
        return decode(regrid_message(buf, self.grid, self.interpolation), what)
