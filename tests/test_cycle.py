import datetime as dt

import pytest

from ensflow.cycle import normalise_cycle, parse_cycle, parse_members
from ensflow.errors import ConfigError


@pytest.mark.parametrize("given", ["20251127_0000", "2025-11-27T00:00", "2025-11-27 00:00",
                                   "2025-11-27T00:00:00", "2025-11-27T00:00Z"])
def test_cycle_spellings_normalise(given):
    assert normalise_cycle(given) == "20251127_0000"


def test_cycle_from_the_command_line():
    """`snakemake --config cycle=20251127_0000` hands the workflow the integer 202511270000."""
    import yaml
    from snakemake.cli import parse_config

    given = parse_config(["cycle=20251127_0000"])["cycle"]
    assert normalise_cycle(given) == "20251127_0000"
    assert normalise_cycle(yaml.safe_load("20251127_1200")) == "20251127_1200"


def test_cycle_keeps_hour():
    assert parse_cycle("2025-11-27T12:00") == dt.datetime(2025, 11, 27, 12)
    assert normalise_cycle("20251127_1800") == "20251127_1800"


@pytest.mark.parametrize("bad,why", [
    ("27/11/2025", "expected YYYYMMDD_HHMM"),
    ("20251127", "expected YYYYMMDD_HHMM"),
    ("2025112700", "expected YYYYMMDD_HHMM"),
    ("20251327_0000", "not a valid date"),
    ("2025-11-27T03:00", "00, 06, 12 or 18"),
    ("20251127_0030", "00, 06, 12 or 18"),
    ("", "expected"),
])
def test_bad_cycles_are_refused_with_the_value(bad, why):
    with pytest.raises(ConfigError) as err:
        parse_cycle(bad)
    assert why in str(err.value)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("spec,expected", [
    ("1-50", list(range(1, 51))),
    ("1,5,10", [1, 5, 10]),
    ("26-50", list(range(26, 51))),
    ("1-3,7", [1, 2, 3, 7]),
    ("3, 1, 2-3", [1, 2, 3]),
    (5, [5]),
    ([2, 4], [2, 4]),
])
def test_member_specs(spec, expected):
    assert parse_members(spec) == expected


@pytest.mark.parametrize("bad,why", [
    ("0-3", "outside 1-50"),
    ("1-51", "outside 1-50"),
    ("5-3", "runs backwards"),
    ("a-b", "cannot read"),
    ("1;2", "cannot read"),
    ("", "cannot read"),
    (True, "expected a spec"),
])
def test_bad_member_specs(bad, why):
    with pytest.raises(ConfigError) as err:
        parse_members(bad)
    assert why in str(err.value)
