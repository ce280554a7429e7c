import datetime as dt

import pytest

from ensflow.layout import (
    forecast_filename,
    forecast_object,
    forecast_windows,
    index_of,
    input_object,
    opendata_object,
)


def test_eleven_windows_of_72_hours():
    w = forecast_windows(792, 72)
    assert len(w) == 11
    assert w[0] == (0, 72) and w[-1] == (720, 792)


def test_windows_must_tile_the_lead_time():
    with pytest.raises(ValueError):
        forecast_windows(792, 60)


def test_todays_names():
    assert forecast_filename("20251127_0000", 7, 72, 144) == \
        "aifs_ens_forecast_20251127_0000_member007_h072-144.grib"
    assert input_object("gs://b", "20251127_0000", 12) == \
        "gs://b/20251127_0000/input/input_state_member_012.pkl"
    assert forecast_object("gs://b/", "20251127_0000", "f.grib") == "gs://b/20251127_0000/forecasts/f.grib"


def test_opendata_layout_and_index():
    url = opendata_object("s3://ecmwf-forecasts", dt.datetime(2025, 11, 27, 0), 36)
    assert url == "s3://ecmwf-forecasts/20251127/00z/ifs/0p25/enfo/20251127000000-36h-enfo-ef.grib2"
    assert index_of(url).endswith("20251127000000-36h-enfo-ef.index")
    old = opendata_object("s3://x", dt.datetime(2024, 2, 1, 12), 0)
    assert old == "s3://x/20240201/12z/0p25/enfo/20240201120000-0h-enfo-ef.grib2"
