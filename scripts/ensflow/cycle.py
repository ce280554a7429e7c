"""Cycle ids and member specs: the two values operators type by hand."""

from __future__ import annotations

import datetime as dt
import re

from ensflow.errors import ConfigError

CYCLE_FORMAT = "%Y%m%d_%H%M"
_CANONICAL = re.compile(r"^\d{8}_\d{4}$")
# `--config cycle=20251127_0000` reaches us as the integer 202511270000: Python's int()
# and YAML both read the underscore as a digit separator.
_COMPACT = re.compile(r"^\d{12}$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:Z|\+00:?00)?$")
CYCLE_HOURS = (0, 6, 12, 18)


def parse_cycle(value: object) -> dt.datetime:
    """Read a cycle id (`YYYYMMDD_HHMM`) or an ISO date-time; refuse anything else."""
    text = str(value).strip()
    when: dt.datetime | None = None
    try:
        if _CANONICAL.match(text):
            when = dt.datetime.strptime(text, CYCLE_FORMAT)
        elif _COMPACT.match(text):
            when = dt.datetime.strptime(text, "%Y%m%d%H%M")
        elif m := _ISO.match(text):
            y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            when = dt.datetime(y, mo, d, h, mi, s)
    except ValueError as exc:
        raise ConfigError(f"cycle {text!r}: not a valid date ({exc})") from None
    if when is None:
        raise ConfigError(
            f"cycle {text!r}: expected YYYYMMDD_HHMM (e.g. 20251127_0000) "
            "or ISO YYYY-MM-DDTHH:MM (e.g. 2025-11-27T00:00)"
        )
    if when.minute or when.second or when.hour not in CYCLE_HOURS:
        raise ConfigError(
            f"cycle {text!r}: ECMWF ensemble cycles start at 00, 06, 12 or 18 UTC on the hour"
        )
    return when


def normalise_cycle(value: object) -> str:
    """The canonical cycle id for any accepted spelling."""
    return parse_cycle(value).strftime(CYCLE_FORMAT)


def cycle_datetime(cycle: str) -> dt.datetime:
    return dt.datetime.strptime(cycle, CYCLE_FORMAT)


def parse_members(spec: object, max_member: int = 50, minimum: int = 1) -> list[int]:
    """Read `1-50`, `1,5,10`, `26-50`, `1-3,7` or a bare number into sorted member numbers.

    `minimum=0` admits the control member (IFS-ENS number 0).
    """
    if isinstance(spec, bool):
        raise ConfigError(f"members {spec!r}: expected a spec like '1-50' or '1,5,10'")
    if isinstance(spec, int):
        parts = [str(spec)]
    elif isinstance(spec, list | tuple):
        parts = [str(p) for p in spec]
    else:
        parts = str(spec).replace(" ", "").split(",")
    members: set[int] = set()
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise ConfigError(
                f"members {spec!r}: cannot read {part!r}; use ranges and lists like '1-50', "
                "'1,5,10' or '26-50'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if lo > hi:
            raise ConfigError(f"members {spec!r}: range {part!r} runs backwards")
        if lo < minimum or hi > max_member:
            raise ConfigError(f"members {spec!r}: {part!r} is outside {minimum}-{max_member}")
        members.update(range(lo, hi + 1))
    if not members:
        raise ConfigError(f"members {spec!r}: no member selected")
    return sorted(members)


def member_id(number: int) -> str:
    return f"{number:03d}"


EPOCH_1900 = dt.datetime(1900, 1, 1)
HOURS_SINCE_1900 = "hours since 1900-01-01 00:00:00.0"


def hours_since_1900(when: dt.datetime) -> int:
    """CF time value in HOURS_SINCE_1900, the time unit of the stores and the cGAN file."""
    return int((when - EPOCH_1900) / dt.timedelta(hours=1))
