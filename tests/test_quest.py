"""AI Weather Quest pieces: exact week windows, units, quintile probabilities, regrid,
submission checks with the quest's own package, and the store's refusal of a partial ensemble."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import xarray as xr

from ensflow.adapters import ensemble_store
from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.grib_encode import GribEncoder
from ensflow.config import load
from ensflow.errors import EnsflowError
from ensflow.layout import submission_name
from ensflow.science import quest
from ensflow.stages import quest_stage

TAS, MSLP, PR = (quest.VARIABLES[v] for v in ("tas", "mslp", "pr"))
ISSUE = dt.datetime(2025, 11, 27)  # a Thursday


def test_window_hours_are_exact():
    assert quest.window_hours(TAS, 1) == list(range(432, 595, 6))
    assert len(quest.window_hours(TAS, 1)) == 28
    assert quest.window_hours(MSLP, 2) == list(range(600, 763, 6))
    assert quest.window_hours(PR, 1) == [432, 600]
    assert quest.window_hours(PR, 2) == [600, 768]
    assert quest.needed_steps([TAS, PR])[0] == 432 and quest.needed_steps([TAS, PR])[-1] == 768
    first, last = quest.valid_dates(ISSUE, 1)
    assert (first, last) == (dt.datetime(2025, 12, 15), dt.datetime(2025, 12, 21))  # days 19–25
    assert quest.valid_dates(ISSUE, 2)[0] == dt.datetime(2025, 12, 22)


def test_weekly_mean_and_accumulation_difference():
    steps = quest.needed_steps([TAS, PR])
    values = np.zeros((2, len(steps), 1, 1))
    for i, s in enumerate(steps):
        values[:, i] = s  # value = lead hour
    tas = quest.weekly(values, steps, TAS, 1)
    assert tas[0, 0, 0] == np.mean(range(432, 595, 6))
    pr = quest.weekly(values * 1e-3, steps, PR, 2)  # accumulation in m
    assert pr[0, 0, 0] == pytest.approx((768 - 600) * 1e-3)
    assert quest.convert_units(pr, PR, "mm")[0, 0, 0] == pytest.approx(168.0)


def test_unknown_unit_pair_is_refused():
    with pytest.raises(EnsflowError, match="cannot convert model units m to climatology units kg"):
        quest.convert_units(np.ones(1), PR, "kg")


def test_quintile_probabilities_known_answer():
    thresholds = np.array([1.0, 2.0, 3.0, 4.0])[:, None, None] * np.ones((4, 2, 3))
    # 10 members: 1 in q1 (0.5), 2 on the q1/q2 edge (1.0 → upper interval, as the quest's
    # scorer places an observation), 3 in q3, 4 in q5
    members = np.array([0.5, 1.0, 1.0, 2.5, 2.5, 2.5, 9, 9, 9, 9])[:, None, None] * np.ones((10, 2, 3))
    probs = quest.quintile_probabilities(members, thresholds)
    assert probs.shape == (5, 2, 3)
    np.testing.assert_allclose(probs[:, 0, 0], [0.1, 0.2, 0.3, 0.0, 0.4])
    np.testing.assert_array_equal(probs.sum(axis=0), np.ones((2, 3)))


def test_thresholds_must_ascend():
    with pytest.raises(EnsflowError, match="not ascending"):
        quest.quintile_probabilities(np.ones((3, 1, 1)), np.array([2, 1, 3, 4.0])[:, None, None])


@pytest.fixture(scope="module")
def encoder():
    enc = GribEncoder("O48", ISSUE, member=3, ensemble_size=50)
    yield enc
    enc.close()


def test_precipitation_regrid_is_never_negative(encoder):
    rng = np.random.default_rng(0)
    tp = np.where(rng.random(10944) < 0.7, 0.0, rng.gamma(0.5, 0.01, 10944))  # mostly dry, spiky
    msg = encoder.encode(FieldSpec("tp", "tp", "sfc", accumulated=True), 600, tp)
    for method in ("grid-box-average", "linear"):
        out = quest.regrid_to_quest(msg, PR, {"pr": method})
        assert out.shape == (121, 240) and out.min() >= 0.0
    conservative = quest.regrid_to_quest(msg, PR, {"pr": "grid-box-average"})
    assert conservative.mean() == pytest.approx(tp.mean(), rel=0.05)  # area mean is kept


def test_in_forecast_and_from_grib_give_the_same_fields(encoder, tmp_path):
    variables = [TAS, PR]
    specs = {"2t": FieldSpec("2t", "2t", "sfc"), "tp": FieldSpec("tp", "tp", "sfc", accumulated=True)}
    regridder = quest.InForecastRegridder(variables, {})
    rng = np.random.default_rng(1)
    path = tmp_path / "member.grib"
    total = np.zeros(10944)
    with open(path, "wb") as f:
        for step in range(6, 769, 6):
            total += np.abs(rng.normal(0, 1e-3, 10944))
            fields = {"2t": 280 + rng.normal(0, 5, 10944), "tp": total.copy()}
            for name, values in fields.items():
                encoder.write(f, specs[name], step, values)
            if regridder.wants(step):
                regridder.add(encoder, specs, step, fields)
    from_files = quest.from_grib_files([path], variables, {})
    # the files hold 16-bit packed values, the forecast job regrids the floats: they agree
    # to the packing precision (weights sum to 1, so the error does not grow)
    packing = {"tas": 60 / 65535, "pr": float(total.max()) / 65535}
    for name in ("tas", "pr"):
        assert (np.isnan(regridder.fields[name]) == np.isnan(from_files[name])).all()
        diff = np.nanmax(np.abs(regridder.fields[name] - from_files[name]))
        assert diff <= packing[name], (name, diff, packing[name])


def test_submission_file_passes_the_quest_checks(tmp_path):
    probs = np.full((5, 121, 240), 0.2)
    da = quest.submission_array(probs, PR, ISSUE, 1, {"synthetic": 1})
    quest.offline_checks(da, "pr", ISSUE, 1)
    assert da.name == "tp" and list(da.quintile.values) == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert da.latitude.values[0] == 90 and da.longitude.values[-1] == 358.5
    assert da.forecast_period_end.values == np.datetime64("2025-12-22T00:00")
    path = tmp_path / submission_name("pr", ISSUE, 1, "team", "model")
    quest.write_netcdf(da, path)
    back = xr.open_dataarray(path)
    assert path.name == "pr_20251127_p1_team_model.nc" and back.shape == (5, 121, 240)
    bad = quest.submission_array(np.full((5, 121, 240), 0.5), PR, ISSUE, 1, {})
    with pytest.raises(ValueError, match="sum to 1"):
        quest.offline_checks(bad, "pr", ISSUE, 1)


def test_sanity_stops_wrong_units():
    probs = np.full((5, 121, 240), 0.2)
    with pytest.raises(EnsflowError, match="outside the plausible range"):
        quest.sanity(PR, np.full((3, 121, 240), -5.0), probs, 3, 3, False)
    with pytest.raises(EnsflowError, match="2 of 3 members"):
        quest.sanity(TAS, np.full((2, 121, 240), 280.0), probs, 2, 3, False)
    flagged = quest.sanity(TAS, np.full((3, 121, 240), 280.0),
                           np.stack([np.ones((121, 240))] + [np.zeros((121, 240))] * 4), 3, 3, False)
    assert flagged["balance_flag"] and flagged["quintile_balance"][0] == 1.0


def settings_with(tmp_path, members: str, **quest_cfg):
    return load("config/config.yaml", {
        "members": members, "quest": {"store": f"file://{tmp_path}/q.icechunk", **quest_cfg}})


def member_fields(tmp_path, settings, member):
    steps = quest.needed_steps(quest_stage.variables(settings))
    fields = {v.name: np.full((len(steps), 121, 240), 280.0 + member, np.float32)
              for v in quest_stage.variables(settings)}
    path = tmp_path / f"m{member}.npz"
    quest.save_member_fields(path, fields, steps, settings.cycle, member, "test")
    return path


@pytest.mark.parametrize("allow", [False, True])
def test_publish_refuses_an_incomplete_ensemble_unless_configured(tmp_path, allow, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    settings = settings_with(tmp_path, "1-3", expected_members=4, allow_partial=allow,
                             min_members=3)
    quest_stage.setup(settings, tmp_path / "setup.json")
    forks = []
    for m in (1, 2, 3):
        forks.append(tmp_path / f"{m}.fork")
        quest_stage.write_member(settings, m, member_fields(tmp_path, settings, m),
                                 tmp_path / "setup.json", forks[-1])
    out = tmp_path / "published.json"
    if not allow:
        with pytest.raises(ensemble_store.PublishError, match="3 of 4 members"):
            quest_stage.publish(settings, tmp_path / "setup.json", forks, out)
        assert not out.exists()
        return
    quest_stage.publish(settings, tmp_path / "setup.json", forks, out)
    data, members, _, pub = quest_stage.load_cycle(settings, out)
    assert pub["partial"] and pub["expected_members"] == 4 and members == [1, 2, 3]
    assert float(data["tas"][2, 0, 0, 0]) == 283.0


def test_upload_preparation_needs_credentials_and_never_prints_them(tmp_path, monkeypatch, capsys):
    settings = load("config/config.yaml")
    monkeypatch.delenv("AIWQ_SUBMIT_PWD", raising=False)
    with pytest.raises(EnsflowError, match=r"\$AIWQ_SUBMIT_PWD \(not set\)"):
        quest_stage.prepare_upload(settings, [], tmp_path / "ready.json")
    monkeypatch.setenv("AIWQ_SUBMIT_PWD", "s3cret-value")
    quest_stage.prepare_upload(settings, ["a.nc"], tmp_path / "ready.json")
    text = (tmp_path / "ready.json").read_text()
    assert "present" in text and "s3cret-value" not in text
    assert "s3cret-value" not in capsys.readouterr().out
