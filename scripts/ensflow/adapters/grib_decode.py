"""GRIB decoding in one place (gribberish), so the library can be swapped without touching stages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ensflow.errors import OpenDataError


def check_message(buf: bytes, what: str) -> None:
    """A whole GRIB edition-2 message: starts GRIB, ends 7777, length as its header says."""
    if len(buf) < 16 or buf[:4] != b"GRIB" or buf[-4:] != b"7777":
        raise OpenDataError(f"{what}: not a whole GRIB message ({len(buf)} bytes)")
    declared = int.from_bytes(buf[8:16], "big") if buf[7] == 2 else int.from_bytes(buf[4:7], "big")
    if declared != len(buf):
        raise OpenDataError(f"{what}: GRIB header says {declared} bytes, got {len(buf)}")


def decode(buf: bytes, what: str = "message") -> NDArray[np.float64]:
    """Values of one message, flat, in the grid's scanning order."""
    import gribberish

    check_message(buf, what)
    try:
        return np.asarray(gribberish.parse_grib_array(buf, 0), dtype=np.float64)
    except Exception as exc:  # gribberish raises plain Exceptions for malformed data
        raise OpenDataError(f"{what}: cannot decode ({exc})") from None


def sections(buf: bytes | bytearray) -> dict[int, tuple[int, int]]:
    """Offset and length of each section of a GRIB2 message (the first of each number)."""
    out: dict[int, tuple[int, int]] = {}
    pos = 16
    while pos < len(buf) - 4 and buf[pos:pos + 4] != b"7777":
        length = int.from_bytes(buf[pos:pos + 4], "big")
        out.setdefault(buf[pos + 4], (pos, length))
        pos += length
    return out


def _signed(raw: bytes) -> int:
    """GRIB2 signed integers are sign-and-magnitude, not two's complement."""
    value = int.from_bytes(raw, "big")
    top = 1 << (8 * len(raw) - 1)
    return -(value & ~top) if value & top else value


def regular_ll_axes(buf: bytes, what: str = "message") -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of a regular lat/lon grid (template 3.0) from the header.

    Read directly, because gribberish refuses the metadata of some ECMWF local parameters.
    """
    s3, _ = sections(buf)[3]
    if int.from_bytes(buf[s3 + 12:s3 + 14], "big") != 0:
        raise OpenDataError(f"{what}: not a regular lat/lon grid (template 3.0)")
    ni = int.from_bytes(buf[s3 + 30:s3 + 34], "big")
    nj = int.from_bytes(buf[s3 + 34:s3 + 38], "big")
    la1, lo1 = _signed(buf[s3 + 46:s3 + 50]) / 1e6, _signed(buf[s3 + 50:s3 + 54]) / 1e6
    la2, lo2 = _signed(buf[s3 + 55:s3 + 59]) / 1e6, _signed(buf[s3 + 59:s3 + 63]) / 1e6
    scan = buf[s3 + 71]
    if scan & 0b0010_0000 or scan & 0b1000_0000:
        raise OpenDataError(f"{what}: scanning mode {scan:#010b} not supported")
    lats = np.linspace(la1, la2, nj)
    span = (lo2 - lo1) % 360.0
    lons = (lo1 + np.linspace(0.0, span, ni)) % 360.0
    return lats, lons


def perturbation_number(buf: bytes) -> int | None:
    """Ensemble member of a message with product template 4.1 or 4.11 (0 = control)."""
    s4, _ = sections(buf)[4]
    template = int.from_bytes(buf[s4 + 7:s4 + 9], "big")
    return buf[s4 + 35] if template in (1, 11) else None


def field_keys(buf: bytes) -> tuple[str, str, int | None, int]:
    """(param, levtype, level, member) as MARS names them, read from the header by eccodes.

    gribberish names ECMWF's local parameters with NCEP tables, so the check that a message
    is the field its index line promised asks eccodes, which knows ECMWF's short names.
    """
    import eccodes

    h = eccodes.codes_new_from_message(buf)
    try:
        param = str(eccodes.codes_get(h, "shortName"))
        levtype = str(eccodes.codes_get(h, "levtype")) if eccodes.codes_is_defined(h, "levtype") else ""
        level = int(eccodes.codes_get(h, "level")) if levtype in ("pl", "sol", "ml") else None
        number = int(eccodes.codes_get(h, "number")) if eccodes.codes_is_defined(h, "number") else 0
        return param, levtype, level, number
    finally:
        eccodes.codes_release(h)


def file_messages(path: str | Path) -> Iterator[tuple[str, int, bytes]]:
    """(shortName, endStep, message) of every message in a GRIB file, keys read by eccodes."""
    import eccodes

    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            try:
                yield (str(eccodes.codes_get(h, "shortName")), int(eccodes.codes_get(h, "endStep")),
                       eccodes.codes_get_message(h))
            finally:
                eccodes.codes_release(h)
