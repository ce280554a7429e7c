"""cGAN stage pieces: region cut, decoding against eccodes, deaccumulation, index selection."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import eccodes
import numpy as np
import pytest

from ensflow.adapters import grib_decode
from ensflow.adapters.opendata_catalogue import Field, Product
from ensflow.demo import data as demo_data
from ensflow.errors import OpenDataError
from ensflow.layout import cgan_netcdf_name
from ensflow.science import cgan_plan
from ensflow.stages import cgan

REGION = {"lat_min": -14.0, "lat_max": 25.0, "lon_min": 19.0, "lon_max": 55.0}


@pytest.fixture(scope="module")
def opendata_message() -> bytes:
    """One message on ECMWF's 0.25° open-data grid (longitudes from 180), CCSDS-packed."""
    lats, lons = demo_data.grid_coordinates(0.25)
    values = demo_data.synthetic_values("2t", None, lats, lons, 3, dt.datetime(2025, 11, 28, 12), 36)
    return demo_data._encode(Product("enfo", "pf", "ef", 3), Field("2t", "sfc"), dt.datetime(2025, 11, 27),
                             36, 0.25, values)


def test_header_axes_match_eccodes(opendata_message):
    lats, lons = grib_decode.regular_ll_axes(opendata_message)
    assert lats.size == 721 and lons.size == 1440
    assert lats[0] == 90 and lats[-1] == -90 and lons[0] == 180 and lons[-1] == 179.75
    h = eccodes.codes_new_from_message(opendata_message)
    try:
        assert grib_decode.perturbation_number(opendata_message) == eccodes.codes_get(h, "number") == 3
    finally:
        eccodes.codes_release(h)


def test_region_equals_eccodes_decode(opendata_message):
    got = cgan.decode_region((opendata_message, REGION, 3, "2t member 3 step 36"))
    assert got.shape == (157, 145) and got.dtype == np.float32
    h = eccodes.codes_new_from_message(opendata_message)
    try:
        vals = eccodes.codes_get_values(h)
        lat = eccodes.codes_get_array(h, "latitudes")
        lon = (eccodes.codes_get_array(h, "longitudes") + 180) % 360 - 180
    finally:
        eccodes.codes_release(h)
    inside = (lat >= -14) & (lat <= 25) & (lon >= 19) & (lon <= 55)
    assert inside.sum() == 157 * 145
    expected = vals[inside].reshape(157, 145)  # eccodes order: north to south, west to east
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    lats, lons = cgan.region_coords(opendata_message, REGION)
    assert lats[0] == 25 and lats[-1] == -14 and lons[0] == 19 and lons[-1] == 55


def test_member_mismatch_is_caught(opendata_message):
    with pytest.raises(OpenDataError, match="message is member 3, the index says 4"):
        cgan.decode_region((opendata_message, REGION, 4, "x"))


def test_truncated_message_is_caught(opendata_message):
    with pytest.raises(OpenDataError, match="not a whole GRIB message"):
        cgan.decode_region((opendata_message[:-100], REGION, 3, "tp member 3 step 36"))


def test_region_slices_refuse_empty_region():
    lats, lons = np.linspace(90, -90, 19), np.arange(0, 360, 10.0)
    with pytest.raises(OpenDataError, match="no points"):
        cgan.region_slices(lats, lons, {"lat_min": 1, "lat_max": 2, "lon_min": 1, "lon_max": 2})


def test_deaccumulate_gives_interval_totals():
    totals = np.array([[0.0, 1.0, 3.0, 2.9, 6.0]])[..., None, None] * np.ones((1, 5, 2, 2))
    out = cgan.deaccumulate(totals, axis=1)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 2.0, 0.0, 3.1])  # dip from packing → 0


def test_variables_map_to_open_data():
    assert cgan_plan.Variable.parse("u700") == cgan_plan.Variable("u700", "u", "pl", 700)
    assert cgan_plan.Variable.parse("2t") == cgan_plan.Variable("2t", "2t", "sfc", None)
    assert cgan_plan.Variable.parse("tp").accumulated and not cgan_plan.Variable.parse("tcw").accumulated


def test_netcdf_name():
    assert cgan_netcdf_name("20251127_1200") == "IFS_20251127_12Z_cgan.nc"


def test_index_selection_lists_everything_missing(tmp_path):
    grib = tmp_path / "x.grib2"
    lines = [{"param": "tp", "levtype": "sfc", "type": "cf", "step": "36", "_offset": 0, "_length": 10},
             {"param": "tp", "levtype": "sfc", "type": "pf", "number": "1", "step": "36",
              "_offset": 10, "_length": 10}]
    (tmp_path / "x.index").write_text("".join(json.dumps(x) + "\n" for x in lines))
    from ensflow.adapters import opendata
    from ensflow.adapters.storage import Storage

    msgs = opendata.load_index(Storage(), f"file://{grib}")
    assert [m.number for m in msgs] == [0, 1]
    with pytest.raises(OpenDataError) as err:
        opendata.select(msgs, [("tp", "sfc", None, 0), ("tp", "sfc", None, 2), ("u", "pl", 700, 1)])
    assert "tp (sfc) member 2" in str(err.value) and "u/700 (pl) member 1" in str(err.value)


@pytest.mark.parametrize("ddof", [0, 1])
def test_partial_sums_of_batches_give_numpys_nanmean_and_nanstd(ddof):
    from ensflow.science import ensemble_moments as em

    rng = np.random.default_rng(3)
    # surface-pressure-like: a large mean and a small spread; some members missing somewhere
    values = 101_000.0 + 80.0 * rng.standard_normal((11, 3, 5, 4))
    values[2, 0, 1, 1] = np.nan
    values[:, 1, 0, 0] = np.nan  # no member at all
    values[1:, 2, 3, 3] = np.nan  # one member only
    values = values.astype(np.float32)
    batches = [values[0:4], values[4:6], values[6:11]]
    mean, std = em.mean_std(em.combine([em.of_members(b) for b in batches]), ddof)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_mean = np.nanmean(values.astype(np.float64), axis=0)
        want_std = np.nanstd(values.astype(np.float64), axis=0, ddof=ddof)
    np.testing.assert_array_equal(np.isnan(mean), np.isnan(want_mean))
    np.testing.assert_array_equal(np.isnan(std), np.isnan(want_std))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(std, want_std, rtol=1e-9, equal_nan=True)
    many = np.isfinite(values).sum(axis=0) > 1
    assert std[many].min() > 30  # the spread survives a mean 1000 times larger


def test_partial_sums_files_round_trip_and_name_their_cycle(tmp_path):
    from ensflow.errors import EnsflowError
    from ensflow.science import ensemble_moments as em

    m = em.of_members(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    em.save(tmp_path / "b.npz", "20251127_0000", [4, 5], {"tp": m})
    members, loaded = em.load(tmp_path / "b.npz", "20251127_0000")
    assert members == [4, 5] and set(loaded) == {"tp"}
    np.testing.assert_array_equal(loaded["tp"].sum, m.sum)
    with pytest.raises(EnsflowError, match="of cycle 20251127_0000, not 20251127_1200"):
        em.load(tmp_path / "b.npz", "20251127_1200")
