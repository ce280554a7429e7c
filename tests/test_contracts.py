"""The contracts of the systems ensflow talks to, each with the reference it follows.

- ECMWF open data: what is published where (data/opendata_catalogue.yaml cites its sources);
- anemoi checkpoint metadata: roles read through anemoi-transform's `Variable`;
- IFS ENS GRIB conventions: keys cfgrib and earthkit-data select on;
- AI Weather Quest: ties as its scorer, climatology files as its package serves them.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ensflow.adapters import checkpoint_info, maps, opendata_requests, quest_climatology
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.opendata_catalogue import Field, Product
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.adapters.storage import Storage
from ensflow.config import load
from ensflow.demo import data as demo_data
from ensflow.demo import world as demo
from ensflow.demo.model import demo_metadata, save_demo_checkpoint
from ensflow.errors import EnsflowError, OpenDataError
from ensflow.science import quest
from ensflow.science.cgan_plan import Variable
from ensflow.stages.cgan import deaccumulate

REPO = Path(__file__).resolve().parents[1]
CYCLE = dt.datetime(2025, 11, 27)  # a Thursday, before IFS 50r1
AFTER_50R1 = dt.datetime(2026, 11, 19)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = save_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "demo.ckpt")
    return checkpoint_info.read(str(path))


# ------------------------------------------------------------------ open data


def test_catalogue_says_where_ecmwf_publishes_each_field():
    cat = load_catalogue()
    # soil temperature is sot on soil levels [anemoi-plugins-ecmwf mappings.yaml; ea-aifs]
    assert cat.opendata_field("stl1", "sfc", None) == (Field("sot", "sol", 1), 1.0)
    assert cat.opendata_field("stl2", "sfc", None) == (Field("sot", "sol", 2), 1.0)
    # z on pressure levels is gh times g [ea-aifs: z_{level} = gh * 9.80665]
    assert cat.opendata_field("z", "pl", 500) == (Field("gh", "pl", 500), 9.80665)
    assert cat.opendata_field("z", "sfc", None) == (Field("z", "sfc", None), 1.0)
    # control forecast: enfo cf before IFS 50r1, the HRES (oper fc) after [docs; client]
    assert cat.member_product(CYCLE, 0) == Product("enfo", "cf", "ef", None)
    assert cat.member_product(AFTER_50R1, 0) == Product("oper", "fc", "fc", None)
    assert cat.member_product(CYCLE, 7) == Product("enfo", "pf", "ef", 7)
    # 06/18 UTC HRES was scda before 50r1 [ecmwf-opendata patch_stream]
    assert cat.hres_stream(CYCLE.replace(hour=18)) == "scda"
    assert cat.hres_stream(AFTER_50R1.replace(hour=18)) == "oper"
    assert cat.constants_product(CYCLE)[0].stream == "oper"


@pytest.mark.parametrize("product,field,when,message", [
    (Product("enfo", "pf", "ef", 1), Field("stl1", "sfc"), CYCLE, "stl1 \\(sfc\\): not published in enfo"),
    (Product("enfo", "pf", "ef", 1), Field("lsm", "sfc"), CYCLE, "lsm \\(sfc\\): not published in enfo"),
    (Product("enfo", "pf", "ef", 1), Field("slor", "sfc"), CYCLE, "not published in enfo"),
    (Product("enfo", "cf", "ef", None), Field("2t", "sfc"), AFTER_50R1, "no enfo cf"),
    (Product("scda", "fc", "fc", None), Field("lsm", "sfc"), AFTER_50R1.replace(hour=6), "retired"),
    (Product("enfo", "pf", "ef", 1), Field("t", "pl", 10), CYCLE, "levels"),
])
def test_catalogue_refuses_what_ecmwf_does_not_publish(product, field, when, message):
    with pytest.raises(OpenDataError, match=message):
        load_catalogue().check(when, product, field, 0)


def test_checkpoint_inputs_map_to_published_fields(checkpoint):
    """92 inputs: enfo with the member number for what varies, oper without for constants."""
    requests = opendata_requests.for_member(checkpoint, CYCLE, 3)
    assert len(requests) == 92
    by_var = {r.variable: r for r in requests}
    assert {r.variable for r in requests if r.product.stream == "oper"} == {"lsm", "z", "sdor", "slor"}
    assert all(r.product == Product("enfo", "pf", "ef", 3) for r in requests
               if r.variable not in {"lsm", "z", "sdor", "slor"})
    assert by_var["stl1"].field == Field("sot", "sol", 1)
    assert by_var["z_850"].field == Field("gh", "pl", 850) and by_var["z_850"].scale == 9.80665
    assert "cos_latitude" not in by_var and "insolation" not in by_var  # computed by anemoi


def test_demo_mirror_holds_only_what_ecmwf_publishes(checkpoint, tmp_path):
    """Every index line of the demo mirror is a field, stream and type of the catalogue:
    no stl1, no constants in enfo, constants in the HRES stream with no number."""
    settings = load(REPO / "config" / "config.yaml", {
        "opendata": {"root": f"file://{tmp_path}/od"}, "demo": {"perturbed_members": 1}})
    layout = OpenDataLayout.from_settings(settings.opendata)
    paths = demo_data.write_mirror(layout, demo.mirror_objects(settings, checkpoint), 6.0)
    cat = load_catalogue()
    seen: dict[str, set[str]] = {}
    for path in paths:
        for line in Path(str(path).rsplit(".", 1)[0] + ".index").read_text().splitlines():
            e = json.loads(line)
            assert set(e) <= set(cat.index_keys), e
            base = dt.datetime.strptime(e["date"] + e["time"], "%Y%m%d%H%M")
            number = int(e["number"]) if "number" in e else None
            cat.check(base, Product(e["stream"], e["type"], "", number),
                      Field(e["param"], e["levtype"], int(e["levelist"]) if "levelist" in e else None),
                      int(e["step"]))
            seen.setdefault(e["stream"], set()).add(e["param"])
            assert ("number" in e) == (e["type"] == "pf"), e
    assert not {"stl1", "stl2", "lsm", "z", "slor", "sdor"} & seen["enfo"]
    assert {"lsm", "z", "slor", "sdor"} <= seen["oper"] and {"lsm", "z", "slor", "sdor"} <= seen["scda"]
    assert "sot" in seen["enfo"] and "gh" in seen["enfo"]


# ------------------------------------------------------------------ checkpoint metadata


def test_demo_metadata_is_shaped_like_a_real_checkpoint():
    meta = demo_metadata(100, "O48")
    text = json.dumps(meta)
    assert '"accumulated"' not in text and '"ensflow"' not in text  # no private keys
    tp = meta["dataset"]["variables_metadata"]["tp"]
    assert tp["process"] == "accumulation" and tp["period"] == ["0:00:00", "6h"]
    assert meta["dataset"]["variables_metadata"]["lsm"]["constant_in_time"] is True


def test_accumulation_constants_and_forcings_are_read_as_anemoi_reads_them(checkpoint):
    """tp marked only by `process: accumulation` is an accumulation (anemoi-transform
    Variable.is_accumulation); computed forcings are not inputs."""
    from anemoi.transform.variables import Variable as AnemoiVariable

    meta = demo_metadata(100, "O48")
    info = checkpoint_info.from_metadata(meta)
    vm = meta["dataset"]["variables_metadata"]
    for spec in info.output_fields:
        assert spec.accumulated == AnemoiVariable.from_dict(spec.name, vm[spec.name]).is_accumulation
    assert [s.name for s in info.output_fields if s.accumulated] == ["tp"]
    assert {s.name for s in info.input_fields if s.constant} == {"lsm", "z", "sdor", "slor"}
    assert not {"cos_latitude", "insolation", "tp"} & {s.name for s in info.input_fields}
    assert info.demo_model and checkpoint.demo_model


# ------------------------------------------------------------------ GRIB output


def test_grib_output_opens_with_cfgrib_and_earthkit_as_ifs_ens(tmp_path):
    """IFS ENS keys: ensemble generating process, 51 forecasts, class/stream/type/expver;
    cfgrib per level type and earthkit-data read number, step, level and values."""
    import cfgrib
    import earthkit.data as ekd

    from ensflow.adapters.checkpoint_info import FieldSpec
    from ensflow.adapters.grib_encode import ENSEMBLE_SIZE, GribEncoder

    enc = GribEncoder("O48", CYCLE, 7, ENSEMBLE_SIZE, 16)
    specs = [FieldSpec("2t", "2t", "sfc"), FieldSpec("10u", "10u", "sfc"),
             FieldSpec("t_850", "t", "pl", 850), FieldSpec("t_500", "t", "pl", 500),
             FieldSpec("tp", "tp", "sfc", accumulated=True)]
    path = tmp_path / "member007.grib"
    n = 10944
    with open(path, "wb") as f:
        for step in (6, 12):
            for i, spec in enumerate(specs):
                enc.write(f, spec, step, np.linspace(0, 1, n) + 250 + i + step)
    enc.close()
    pl = xr.open_dataset(path, engine="cfgrib", indexpath="",
                         backend_kwargs={"filter_by_keys": {"typeOfLevel": "isobaricInhPa"}})
    assert int(pl["number"]) == 7 and sorted(pl["isobaricInhPa"].values.tolist()) == [500, 850]
    assert pl["t"].sel(isobaricInhPa=850).isel(step=1).values.max() == pytest.approx(252 + 12 + 1, abs=0.01)
    assert pl["t"].attrs["GRIB_dataType"] == "pf"
    for ds in cfgrib.open_datasets(str(path), indexpath=""):
        assert int(ds["number"]) == 7
    fields = ekd.from_source("file", str(path))
    sel = fields.sel(param="tp", number=7)
    assert [f.metadata("stepRange") for f in sel] == ["0-6", "0-12"]
    for f in fields:
        md = {k: f.metadata(k) for k in ("class", "stream", "type", "expver",
                                          "typeOfGeneratingProcess", "numberOfForecastsInEnsemble")}
        assert md == {"class": "ai", "stream": "enfo", "type": "pf", "expver": "0001",
                      "typeOfGeneratingProcess": 4, "numberOfForecastsInEnsemble": 51}


# ------------------------------------------------------------------ AI Weather Quest


def scorer_probabilities(members: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each finite member placed by AI_WQ_package's own scorer, averaged."""
    from AI_WQ_package.forecast_evaluation import conditional_obs_probs

    coords = {"latitude": np.arange(members.shape[1]), "longitude": np.arange(members.shape[2])}
    b = xr.DataArray(bounds, dims=("quantile", "latitude", "longitude"),
                     coords={"quantile": [0.2, 0.4, 0.6, 0.8], **coords})
    one_hot = [conditional_obs_probs(xr.DataArray(m, dims=("latitude", "longitude"), coords=coords), b)
               .values for m in members]
    n = np.isfinite(members).sum(axis=0)
    return np.nansum(one_hot, axis=0) / n


def test_quintile_probabilities_place_ties_as_the_quests_scorer_does():
    """Members equal to an edge, zero rainfall against zero edges (a desert), NaN members."""
    rng = np.random.default_rng(3)
    bounds = np.sort(rng.integers(0, 4, size=(4, 6, 7)).astype(float), axis=0)
    bounds[:, 0, 0] = [0.0, 0.0, 0.0, 2.0]  # desert: three zero-width quintiles
    bounds[:, 0, 1] = [1.0, 2.0, 3.0, 4.0]
    members = rng.integers(0, 5, size=(10, 6, 7)).astype(float)  # integers: many ties
    members[:, 0, 0] = 0.0
    members[:, 0, 1] = [1.0, 1.0, 2.0, 4.0, 4.0, 0.5, 3.0, 3.0, 3.0, np.nan]
    members[3, 2, 2] = np.nan
    ours = quest.quintile_probabilities(members, bounds)
    np.testing.assert_allclose(ours, scorer_probabilities(members, bounds))
    np.testing.assert_allclose(ours[:, 0, 0], [0, 0, 0, 1, 0])  # 0 mm with edges 0,0,0,2 is q4
    np.testing.assert_allclose(ours[:, 0, 1], np.array([1, 2, 1, 3, 2]) / 9)  # edge goes up
    np.testing.assert_allclose(ours.sum(axis=0), 1.0)


def clim_file(directory: Path, var: str, valid: dt.date, thresholds: np.ndarray, units: str | None,
              lat_ascending: bool = False, nlon: int = 240) -> Path:
    lats = quest.LATITUDES[::-1] if lat_ascending else quest.LATITUDES
    data = thresholds[:, ::-1] if lat_ascending else thresholds
    lons = np.arange(nlon) * (360.0 / nlon)
    da = xr.DataArray(data[None, :, :, :nlon], name=var, dims=("time", "quantile", "lat", "lon"),
                      coords={"time": [np.datetime64(valid, "ns")], "quantile": [0.2, 0.4, 0.6, 0.8],
                              "lat": lats, "lon": lons},
                      attrs={"units": units} if units else {})
    path = directory / quest_climatology.filename(var, valid)
    da.to_netcdf(path)
    return path


def thresholds(base: float, spread: float) -> np.ndarray:
    lat = np.cos(np.deg2rad(quest.LATITUDES))[None, :, None]
    return base + spread * np.arange(1, 5)[:, None, None] * lat * np.ones((4, 121, 240))


def test_climatology_file_per_valid_date_with_the_quests_name():
    issue = dt.datetime(2025, 11, 27)
    got = [(v, p, d.isoformat()) for v, p, d in quest_climatology.needed(issue, ["tas", "pr"])]
    assert got == [("tas", 1, "2025-12-15"), ("tas", 2, "2025-12-22"),
                   ("pr", 1, "2025-12-15"), ("pr", 2, "2025-12-22")]
    assert quest_climatology.filename("pr", dt.date(2025, 12, 15)) == \
        "pr_20yrCLIM_WEEKLYSUM_quintiles_20251215.nc"
    assert quest_climatology.remote_path("mslp", dt.date(2025, 12, 22)) == \
        "climatologies/2025/mslp_20yrCLIM_WEEKLYMEAN_quintiles_20251222.nc"


def test_climatology_from_the_quests_server_through_its_own_package(tmp_path, monkeypatch):
    """AI_WQ_package's retrieve_20yr_quantile_clim builds the name and remote path itself;
    its download client (ECMWF's `sites` SDK, a server that cannot exist here) is the only
    stand-in: it serves the quest's layout from a directory."""
    served = tmp_path / "server"
    valid = dt.date(2025, 12, 15)
    (served / "climatologies" / "2025").mkdir(parents=True)
    clim_file(served / "climatologies" / "2025", "pr", valid, thresholds(5.0, 3.0), "mm")
    asked = []

    class Manager:
        def download(self, remote_path):
            asked.append(remote_path)
            return (served / remote_path.lstrip("/")).read_bytes()

    class Site:
        @staticmethod
        def from_space_and_name(space, name):
            assert (space, name) == ("ecbox", "AI_Weather_Quest")
            return types.SimpleNamespace(get_content_manager=lambda authenticator: Manager())

    sdk = types.ModuleType("sites.sdk.sites")
    sdk.Site = Site
    sdk.Authenticator = types.SimpleNamespace(from_token=lambda token: token)
    for name in ("sites", "sites.sdk"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "sites.sdk.sites", sdk)
    monkeypatch.delitem(sys.modules, "AI_WQ_package.retrieve_evaluation_data", raising=False)
    monkeypatch.setenv("AIWQ_TEST_PWD", "secret")
    dest = tmp_path / "cycle" / quest_climatology.filename("pr", valid)
    quest_climatology.fetch(Storage(), "aiwq", "pr", valid, dest, "AIWQ_TEST_PWD")
    assert asked == ["/climatologies/2025/pr_20yrCLIM_WEEKLYSUM_quintiles_20251215.nc"]
    values, info = quest_climatology.load_checked(dest, "pr", valid, "mm")
    assert values.shape == (4, 121, 240) and info["units"] == "mm (file)"


def test_climatology_in_another_latitude_order_gives_the_same_thresholds(tmp_path):
    valid = dt.date(2025, 12, 15)
    t = thresholds(280.0, 2.0)
    t[:, 10, :] += np.arange(4)[:, None]  # mark one latitude row
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    down, _ = quest_climatology.load_checked(clim_file(tmp_path / "a", "tas", valid, t, "K"),
                                             "tas", valid, "K")
    up, info = quest_climatology.load_checked(
        clim_file(tmp_path / "b", "tas", valid, t, "K", lat_ascending=True), "tas", valid, "K")
    assert info["reordered"]
    np.testing.assert_array_equal(down, up)
    np.testing.assert_allclose(up, t, rtol=1e-6)


@pytest.mark.parametrize("make,message", [
    (lambda d, v: clim_file(d, "tas", v - dt.timedelta(days=7), thresholds(280, 2), "K"),
     "expected tas_20yrCLIM_WEEKLYMEAN_quintiles_20251215.nc"),
    (lambda d, v: (clim_file(d, "tas", v - dt.timedelta(days=7), thresholds(280, 2), "K")
                   .rename(d / quest_climatology.filename("tas", v))), "stale file"),
    (lambda d, v: clim_file(d, "tas", v, thresholds(280, 2), "K", nlon=144),
     "is not the quest's 1.5° grid"),
    (lambda d, v: clim_file(d, "tas", v, thresholds(7, 2), "degC"), "units 'degC', config"),
    (lambda d, v: clim_file(d, "tas", v, thresholds(0.001, 0.001), None), "no units attribute"),
])
def test_a_wrong_climatology_file_is_refused_before_any_probability(tmp_path, make, message):
    valid = dt.date(2025, 12, 15)
    path = make(tmp_path, valid)
    with pytest.raises(quest_climatology.ClimatologyError, match=message):
        quest_climatology.load_checked(path, "tas", valid, "K")


def test_precipitation_in_metres_without_units_is_refused(tmp_path):
    valid = dt.date(2025, 12, 15)
    path = clim_file(tmp_path, "pr", valid, thresholds(0.002, 0.003), None)
    with pytest.raises(quest_climatology.ClimatologyError, match="are not in mm"):
        quest_climatology.load_checked(path, "pr", valid, "mm")


def test_submissions_are_issued_on_thursdays_at_00_utc():
    quest.check_issue_date("20251127_0000", False)
    with pytest.raises(EnsflowError, match=r"is a Tuesday.*allow_any_issue_date"):
        quest.check_issue_date("20251125_0000", False)
    with pytest.raises(EnsflowError, match="12 UTC is a Thursday"):
        quest.check_issue_date("20251127_1200", False)
    quest.check_issue_date("20251125_0000", True)


def test_maps_show_ties_as_ties_and_draw_natural_earth_offline():
    probs = np.zeros((5, 2, 2))
    probs[:, 0, 0] = [0.6, 0.1, 0.1, 0.1, 0.1]
    probs[:, 0, 1] = [0.4, 0.4, 0.2, 0, 0]
    probs[:, 1, 0] = [0.2] * 5
    probs[:, 1, 1] = [0, 0, 0, 0.1, 0.9]
    np.testing.assert_array_equal(maps.most_likely_quintile(probs), [[1, maps.TIE], [maps.TIE, 5]])
    coast = maps.natural_earth_lines("coastline")
    assert len(coast) > 100
    # the Horn of Africa's coast passes near 51°E, 11°N
    assert any(np.min(np.hypot(p[:, 0] - 51.0, p[:, 1] - 11.0)) < 1.5 for p in coast)


# ------------------------------------------------------------------ cGAN


def test_only_nonnegative_accumulations_are_clipped():
    totals = np.array([0.0, -2.0e6, -5.0e6, -4.0e6])[None, :, None, None]  # str: net thermal
    np.testing.assert_allclose(deaccumulate(totals, axis=1, nonnegative=Variable.parse("str").nonnegative)
                               .ravel(), [-2.0e6, -3.0e6, 1.0e6])
    assert Variable.parse("tp").nonnegative and not Variable.parse("str").nonnegative
    np.testing.assert_allclose(deaccumulate(np.array([0.0, 1.0, 0.999])[None, :, None, None], axis=1)
                               .ravel(), [1.0, 0.0])


def test_tp_marked_only_by_process_accumulation_is_written_as_a_total(checkpoint, tmp_path):
    """The real checkpoint says `process: accumulation` and nothing else: GRIB tp is the
    0-N total, and the quest's weekly pr equals the sum of the runner's 6-hourly amounts."""
    import eccodes
    from anemoi.inference.runners.simple import SimpleRunner

    from ensflow.adapters import safe_pickle
    from ensflow.layout import forecast_windows
    from ensflow.stages import forecast

    settings = load(REPO / "config" / "config.yaml", {"checkpoint": checkpoint.path})
    state = {"date": CYCLE, "fields": {f.name: np.full((2, checkpoint.npoints), 1.0, np.float32)
                                       for f in checkpoint.input_fields}}
    pkl = tmp_path / "input.pkl"
    pkl.write_bytes(safe_pickle.dumps(state))
    outputs = [tmp_path / f"w{a}.grib" for a, _ in forecast_windows(792, 72)]
    forecast.run_member(settings, 3, pkl, outputs, tmp_path / "quest.npz")

    runner = SimpleRunner(checkpoint.path, device="cpu", precision="32",
                          seed=forecast.member_seed(settings, 3))
    amounts = {round((s["date"] - CYCLE).total_seconds() / 3600): np.asarray(s["fields"]["tp"], float)
               for s in runner.run(input_states=safe_pickle.load(str(pkl), "input"), lead_time=792)}
    totals = {}
    for path in outputs:
        with open(path, "rb") as f:
            while (h := eccodes.codes_grib_new_from_file(f)) is not None:
                if eccodes.codes_get(h, "shortName") == "tp":
                    totals[eccodes.codes_get(h, "stepRange")] = eccodes.codes_get_values(h)
                eccodes.codes_release(h)
    assert sorted(totals, key=lambda r: int(r.split("-")[1])) == [f"0-{h}" for h in range(6, 793, 6)]
    np.testing.assert_allclose(totals["0-600"], sum(amounts[h] for h in range(6, 601, 6)), atol=2e-4)

    fields, steps, _ = quest.load_member_fields(tmp_path / "quest.npz")
    pr = quest.VARIABLES["pr"]
    weekly_mm = quest.convert_units(quest.weekly(fields["pr"][None].astype(float), steps, pr, 1), pr, "mm")[0]
    by_hand = sum(amounts[h] for h in range(438, 601, 6))  # 6-hourly amounts in (432, 600] h, m
    regridder = quest.QuestRegridder(settings.quest.methods)
    from ensflow.adapters.grib_encode import ENSEMBLE_SIZE, GribEncoder

    enc = GribEncoder(checkpoint.grid, CYCLE, 3, ENSEMBLE_SIZE, 16)
    spec = next(s for s in checkpoint.output_fields if s.name == "tp")
    expected = regridder.values(pr, by_hand, lambda: enc.encode(spec, 600, by_hand)) * 1000.0
    np.testing.assert_allclose(weekly_mm, expected, atol=0.05)
    assert weekly_mm.mean() > 10.0  # 28 amounts of ~1 mm, not one 6-hour amount
