"""GRIB encoding in one place.

eccodes writes each message's header once per field and step; the data section is packed
here with numpy (simple packing, byte-aligned widths). That keeps eccodes' metadata
handling and makes packing a vectorised copy instead of eccodes' per-value loop.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.grib_decode import sections
from ensflow.errors import ForecastError

SUPPORTED_BITS = (8, 16, 24)
GLOBAL_SEED_GRID = {  # order matters: eccodes derives increments from the corners
    "Ni": 180, "Nj": 91, "latitudeOfFirstGridPointInDegrees": 90.0,
    "longitudeOfFirstGridPointInDegrees": 0.0, "latitudeOfLastGridPointInDegrees": -90.0,
    "longitudeOfLastGridPointInDegrees": 358.0, "iDirectionIncrementInDegrees": 2.0,
    "jDirectionIncrementInDegrees": 2.0,
}
_LEVTYPE = {"pl": "isobaricInhPa", "ml": "hybrid", "sol": "soil"}
# MARS class of AIFS products in ECMWF's archive and open data ("class": "ai" in AIFS-ENS
# index lines); IFS-ENS itself is "od".
MARS_CLASS = "ai"
ENSEMBLE_SIZE = 51  # IFS/AIFS ENS: control + 50 perturbed members


@cache
def grid_template(grid: str) -> bytes:
    """An empty simple-packed message on `grid`, with geometry written by mir."""
    import eccodes

    from ensflow.adapters.regrid import regrid_message

    h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    try:
        for key, value in GLOBAL_SEED_GRID.items():
            eccodes.codes_set(h, key, value)
        eccodes.codes_set_values(h, np.linspace(0.0, 1.0, 180 * 91))
        seed = eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)
    return regrid_message(seed, grid)


@cache
def param_id(short_name: str, accumulated: bool = False) -> int:
    """eccodes' paramId for a short name; looked up once, as the lookup costs ~0.1 s."""
    import eccodes

    h = eccodes.codes_grib_new_from_samples("GRIB2")
    try:
        eccodes.codes_set(h, "centre", "ecmf")
        eccodes.codes_set(h, "productDefinitionTemplateNumber", 11 if accumulated else 1)
        eccodes.codes_set(h, "shortName", short_name)
        return int(eccodes.codes_get(h, "paramId"))
    finally:
        eccodes.codes_release(h)


@cache
def packed_grid_template(grid: str, bits: int) -> bytes:
    """The grid template, simple-packed at `bits` with non-constant data (full section 7)."""
    import eccodes

    h = eccodes.codes_new_from_message(grid_template(grid))
    try:
        eccodes.codes_set(h, "packingType", "grid_simple")
        eccodes.codes_set(h, "bitsPerValue", bits)
        n = eccodes.codes_get(h, "numberOfValues")
        eccodes.codes_set_values(h, np.arange(n, dtype=np.float64))
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


def pack_simple(values: NDArray[np.floating], bits: int) -> tuple[float, int, bytes]:
    """Simple packing with decimal scale 0: reference value, binary scale, packed bytes.

    With ref <= min and 2**e >= span / (2**bits - 1), every scaled value lies in
    [0, 2**bits - 1], so no clipping pass is needed.
    """
    v = np.asarray(values)
    vmin, vmax = float(v.min()), float(v.max())
    top = 2**bits - 1
    span = vmax - vmin
    e = 0 if span == 0 else math.ceil(math.log2(span / top))
    ref = np.float32(vmin)
    if float(ref) > vmin:
        ref = np.nextafter(ref, np.float32(-np.inf))
    q = np.subtract(v, float(ref), dtype=np.float64)
    q *= 2.0**-e
    np.rint(q, out=q)
    if bits == 8:
        data = q.astype(np.uint8).tobytes()
    elif bits == 16:
        data = q.astype(">u2").tobytes()
    else:
        data = q.astype(">u4").view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()
    return float(ref), e, data


@dataclass
class FieldTemplate:
    """A field's message with header set for one date; steps and data filled per message."""

    handle: int
    spec: FieldSpec
    npoints: int
    bits: int


class GribEncoder:
    """Writes one member's output fields as GRIB2 on the checkpoint grid."""

    def __init__(self, grid: str, base_date: dt.datetime, member: int, ensemble_size: int,
                 bits: int = 16, extra: dict[str, str | int] | None = None) -> None:
        import eccodes

        if bits not in SUPPORTED_BITS:
            raise ValueError(f"bits_per_value {bits}: supported are {SUPPORTED_BITS}")
        self.grid = grid
        self.base_date = base_date
        self.member = member
        self.ensemble_size = ensemble_size
        self.bits = bits
        self.extra = dict(extra or {})
        self._templates: dict[str, FieldTemplate] = {}
        self._eccodes = eccodes

    def _template(self, spec: FieldSpec) -> FieldTemplate:
        if spec.name in self._templates:
            return self._templates[spec.name]
        ec = self._eccodes
        h = ec.codes_new_from_message(packed_grid_template(self.grid, self.bits))
        n = ec.codes_get(h, "numberOfValues")
        ec.codes_set(h, "centre", "ecmf")
        # IFS ENS products: ECMWF local definition 1 with the MARS keys earthkit-data and
        # cfgrib select on (class, stream enfo, type cf/pf, expver), ensemble template 4.1/4.11.
        ec.codes_set(h, "setLocalDefinition", 1)
        ec.codes_set(h, "localDefinitionNumber", 1)
        ec.codes_set(h, "marsClass", MARS_CLASS)
        ec.codes_set(h, "marsStream", "enfo")
        ec.codes_set(h, "marsType", "cf" if self.member == 0 else "pf")
        ec.codes_set(h, "experimentVersionNumber", "0001")
        ec.codes_set(h, "productDefinitionTemplateNumber", 11 if spec.accumulated else 1)
        if spec.levtype in _LEVTYPE:
            ec.codes_set(h, "typeOfLevel", _LEVTYPE[spec.levtype])
            ec.codes_set(h, "level", int(spec.levelist or 0))
        ec.codes_set(h, "paramId", param_id(spec.param, spec.accumulated))
        if spec.levtype in _LEVTYPE:
            ec.codes_set(h, "level", int(spec.levelist or 0))
        ec.codes_set(h, "typeOfProcessedData", 4 if self.member else 3)  # perturbed / control
        ec.codes_set(h, "typeOfGeneratingProcess", 4)  # ensemble forecast
        ec.codes_set(h, "perturbationNumber", self.member)
        ec.codes_set(h, "numberOfForecastsInEnsemble", self.ensemble_size)
        ec.codes_set(h, "typeOfEnsembleForecast", 3)
        ec.codes_set(h, "dataDate", int(self.base_date.strftime("%Y%m%d")))
        ec.codes_set(h, "dataTime", int(self.base_date.strftime("%H%M")))
        ec.codes_set(h, "stepUnits", "h")
        for key, value in self.extra.items():
            ec.codes_set(h, key, value)
        template = FieldTemplate(h, spec, n, self.bits)
        self._templates[spec.name] = template
        return template

    def encode(self, spec: FieldSpec, step: int, values: NDArray[np.floating]) -> bytes:
        """One message for `spec` at `step` hours; refuses non-finite or mis-sized values."""
        ec = self._eccodes
        t = self._template(spec)
        if values.shape != (t.npoints,):
            raise ForecastError(f"{spec.name} step {step}: {values.shape} values, grid "
                                f"{self.grid} has {t.npoints}")
        if not np.isfinite(values).all():
            raise ForecastError(f"{spec.name} step {step}: non-finite values in model output")
        if spec.accumulated:
            ec.codes_set(t.handle, "startStep", 0)
            ec.codes_set(t.handle, "endStep", step)
        else:
            ec.codes_set(t.handle, "step", step)
        buf = bytearray(ec.codes_get_message(t.handle))
        ref, e, data = pack_simple(values, t.bits)
        sec = sections(buf)
        s5, _ = sec[5]
        buf[s5 + 11:s5 + 15] = struct.pack(">f", ref)
        buf[s5 + 15:s5 + 17] = ((abs(e) | 0x8000) if e < 0 else e).to_bytes(2, "big")
        buf[s5 + 17:s5 + 19] = b"\x00\x00"
        s7, n7 = sec[7]
        if n7 - 5 != len(data):
            raise AssertionError(f"section 7 holds {n7 - 5} bytes, packed {len(data)}")
        buf[s7 + 5:s7 + n7] = data
        return bytes(buf)

    def write(self, f: BinaryIO, spec: FieldSpec, step: int, values: NDArray[np.floating]) -> int:
        msg = self.encode(spec, step, values)
        f.write(msg)
        return len(msg)

    def close(self) -> None:
        for t in self._templates.values():
            self._eccodes.codes_release(t.handle)
        self._templates.clear()


def read_messages(path: str | Path) -> list[dict[str, object]]:
    """Key metadata and values of every message in a file, decoded by eccodes (for checks)."""
    import eccodes

    out = []
    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            try:
                out.append({
                    "shortName": eccodes.codes_get(h, "shortName"),
                    "level": eccodes.codes_get(h, "level"),
                    "number": eccodes.codes_get(h, "number"),
                    "step": eccodes.codes_get(h, "endStep"),
                    "stepRange": eccodes.codes_get(h, "stepRange"),
                    "gridType": eccodes.codes_get(h, "gridType"),
                    "numberOfValues": eccodes.codes_get(h, "numberOfValues"),
                    "dataDate": eccodes.codes_get(h, "dataDate"),
                    "dataTime": eccodes.codes_get(h, "dataTime"),
                    "values": eccodes.codes_get_values(h),
                })
            finally:
                eccodes.codes_release(h)
    return out
