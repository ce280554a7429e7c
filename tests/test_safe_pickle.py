import datetime as dt
import os
import pickle

import numpy as np
import pytest

from ensflow.adapters import safe_pickle
from ensflow.errors import InputStateError, UnsafePickleError


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/ensflow-pwned",))


def test_round_trip_of_an_input_state():
    state = {"date": dt.datetime(2025, 11, 27), "fields": {"2t": np.arange(6.0).reshape(2, 3)},
             "meta": [1, 2.5, "x", (3,), {4}], "lag": dt.timedelta(hours=6)}
    for protocol in (2, 4, 5):
        got = safe_pickle.loads(pickle.dumps(state, protocol=protocol))
        np.testing.assert_array_equal(got["fields"]["2t"], state["fields"]["2t"])
        assert got["date"] == state["date"] and got["lag"] == state["lag"]


def test_float32_and_int_arrays_load():
    arr = np.ones((2, 5), dtype=np.float32)
    got = safe_pickle.loads(pickle.dumps({"a": arr, "b": np.int64(3)}))
    assert got["a"].dtype == np.float32


def test_code_execution_is_refused_before_it_runs(tmp_path):
    marker = "/tmp/ensflow-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(UnsafePickleError) as err:
        safe_pickle.loads(pickle.dumps({"fields": Exploit()}), "member 007")
    assert "member 007" in str(err.value)
    assert "system" in str(err.value)
    assert not os.path.exists(marker)


def test_truncated_pickle_is_named():
    data = pickle.dumps({"fields": {"2t": np.zeros((2, 1000))}})
    with pytest.raises(InputStateError, match="member 003: not a readable pickle"):
        safe_pickle.loads(data[: len(data) // 2], "member 003")


def test_garbage_is_not_a_pickle():
    with pytest.raises(InputStateError):
        safe_pickle.loads(b"GRIB....7777", "x")
