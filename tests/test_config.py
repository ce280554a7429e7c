from pathlib import Path

import pytest
import yaml

from ensflow.config import load, validate
from ensflow.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def demo() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_demo_config_is_valid():
    s = load(REPO / "config/config.yaml")
    assert s.cycle == "20251127_0000"
    assert s.members == [1, 2, 3, 4]
    assert s.synthetic is True


def test_operational_config_differs_only_in_values():
    op = yaml.safe_load((REPO / "config/operational.yaml").read_text())
    d = demo()

    def keys(x, prefix=""):
        out = set()
        for k, v in x.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(op) == keys(d)
    s = validate(op)
    assert s.members == list(range(1, 51))
    assert s.bucket.startswith("gs://")
    assert s.forecast.device == "cuda"
    assert s.forecast.precision == "16"
    assert s.forecast.num_chunks == 16


def test_iso_cycle_is_normalised_in_settings():
    cfg = demo() | {"cycle": "2025-11-27T06:00"}
    s = validate(cfg)
    assert s.cycle == "20251127_0600"
    assert s.config["cycle"] == "20251127_0600"


@pytest.mark.parametrize("change,key", [
    ({"forecast": {"precision": "8"}}, "forecast.precision"),
    ({"window": 0}, "window"),
    ({"bucket": "ftp://x"}, "bucket"),
    ({"forecast": {"device": "tpu"}}, "forecast.device"),
    ({"forecast": {"lead_time": 790}}, "forecast.lead_time"),
])
def test_schema_errors_name_the_key(change, key):
    cfg = demo()
    for k, v in change.items():
        cfg[k] = cfg[k] | v if isinstance(v, dict) else v
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="windwo"):
        validate(demo() | {"windwo": 3})


def test_hours_per_file_must_divide_lead_time():
    cfg = demo()
    cfg["forecast"] = cfg["forecast"] | {"hours_per_file": 60}
    with pytest.raises(ConfigError, match="hours_per_file"):
        validate(cfg)


def _refusal(**change) -> str:
    with pytest.raises(ConfigError) as err:
        validate({**demo(), **change})
    assert "\n" not in str(err.value), "one line"
    return str(err.value)


def test_a_cycle_in_the_future_is_refused_unless_allowed():
    import datetime as dt

    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y%m%d_0000")
    message = _refusal(cycle=later)
    assert f"config key 'cycle': {later} is in the future" in message
    assert "allow_future_cycle: true" in message
    assert validate({**demo(), "cycle": later, "allow_future_cycle": True}).cycle == later


@pytest.mark.parametrize("change,key", [
    ({"bucket": "gs:///demo"}, "bucket"),
    ({"bucket": "s3://"}, "bucket"),
    ({"bucket": "gs://Demo_Bucket!/x"}, "bucket"),
    ({"opendata": {"root": "s3:///ecmwf-forecasts"}}, "opendata.root"),
    ({"cgan": {"store": "gs:///stores/cgan.icechunk"}}, "cgan.store"),
    ({"quest": {"climatology": "gs://"}}, "quest.climatology"),
])
def test_a_malformed_url_is_named_before_anything_runs(change, key):
    message = _refusal(**change)
    assert message.startswith(f"config key '{key}': ")
    assert "a URL file://PATH, gs://BUCKET[/PREFIX] or s3://BUCKET[/PREFIX]" in message
    assert validate({**demo(), "bucket": "gs://ensflow-test.eu_1/demo"}).bucket


def test_climatology_units_must_be_ones_the_variable_converts_to():
    quest = {**demo()["quest"], "climatology_units": {"tas": "degF", "mslp": "Pa", "pr": "mm"}}
    message = _refusal(quest=quest)
    assert message == ("config key 'quest.climatology_units.tas': 'degF' is not a unit tas "
                       "converts to from K (known: K, degC)")


def test_a_second_quest_cycle_for_one_issue_day_is_refused():
    quest = {**demo()["quest"], "allow_any_issue_date": True}
    message = _refusal(cycle="20251127_1200", quest=quest)
    assert message.startswith("config key 'quest.enabled': cycle 20251127_1200 is not a 00 UTC run; "
                              "quest.store keeps one cycle per issue date")
    assert validate({**demo(), "cycle": "20251127_1200", "quest": {**quest, "enabled": False}})
