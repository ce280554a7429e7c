"""GRIB decoding in one place (gribberish), so the library can be swapped without touching stages."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .errors import OpenDataError


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


def grid_shape(buf: bytes) -> tuple[int, ...]:
    import gribberish

    return tuple(gribberish.parse_grib_message_metadata(buf, 0).grid_shape)
