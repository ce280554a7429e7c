"""Names of every object and file a cycle touches; today's names, so existing buckets keep working."""

from __future__ import annotations

import datetime as dt

from ensflow.cycle import member_id


def forecast_windows(lead_time: int, hours_per_file: int) -> list[tuple[int, int]]:
    """Output files as (start, end] hour windows: 792 h in 72 h files gives 11 windows."""
    if lead_time % hours_per_file:
        raise ValueError(f"lead_time {lead_time} h is not a multiple of {hours_per_file} h")
    return [(a, a + hours_per_file) for a in range(0, lead_time, hours_per_file)]


def window_tag(start: int, end: int) -> str:
    return f"h{start:03d}-{end:03d}"


def forecast_filename(cycle: str, member: int, start: int, end: int) -> str:
    return f"aifs_ens_forecast_{cycle}_member{member_id(member)}_{window_tag(start, end)}.grib"


def input_filename(member: int) -> str:
    return f"input_state_member_{member_id(member)}.pkl"


def join_url(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def input_object(bucket: str, cycle: str, member: int) -> str:
    return join_url(bucket, cycle, "input", input_filename(member))


def forecast_object(bucket: str, cycle: str, filename: str) -> str:
    return join_url(bucket, cycle, "forecasts", filename)


def opendata_object(
    root: str, base: dt.datetime, step: int, model: str = "ifs", resol: str = "0p25",
    stream: str = "enfo", file_type: str = "ef",
) -> str:
    """ECMWF open-data layout (ecmwf-opendata's HOURLY_PATTERN); dates before 2024-02-28 06z
    have no model segment. `file_type` is `ef` for enfo, `fc` for oper/scda."""
    ymd, hh = base.strftime("%Y%m%d"), base.strftime("%H")
    stem = f"{base:%Y%m%d%H}0000-{step}h-{stream}-{file_type}.grib2"
    if base < dt.datetime(2024, 2, 28, 6):
        return join_url(root, ymd, f"{hh}z", resol, stream, stem)
    return join_url(root, ymd, f"{hh}z", model, resol, stream, stem)


def index_of(grib_url: str) -> str:
    return grib_url.rsplit(".", 1)[0] + ".index"
