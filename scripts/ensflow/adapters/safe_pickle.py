"""Loading pickles through an allow-list: input states and fork files are code when unpickled.

Only numpy arrays, datetimes and plain containers may be rebuilt; anything else is refused
before it runs.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from pathlib import Path
from typing import Any

from ensflow.errors import InputStateError, UnsafePickleError

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "str"), ("builtins", "bytes"),
    ("builtins", "bytearray"), ("builtins", "int"), ("builtins", "float"),
    ("builtins", "bool"), ("builtins", "complex"), ("builtins", "slice"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles carry bytes this way
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})
_NUMPY_DTYPES = ("numpy.dtypes",)


class AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, extra: frozenset[tuple[str, str]] = frozenset()) -> None:
        super().__init__(file)
        self.extra = extra

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 era names (protocol < 3), mapped as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        if key in ALLOWED or key in self.extra or (module in _NUMPY_DTYPES and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafePickleError(f"refuses to import {module}.{name}")


def loads(data: bytes, what: str = "pickle", extra: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """Unpickle bytes through the allow-list (plus `extra`); errors name `what`."""
    try:
        return AllowListUnpickler(io.BytesIO(data), extra).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{what}: unsafe pickle, {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, MemoryError) as exc:
        raise InputStateError(f"{what}: not a readable pickle (truncated or corrupt: "
                              f"{type(exc).__name__}: {exc})") from None


def load(path: str | Path, what: str | None = None) -> Any:
    path = Path(path)
    return loads(path.read_bytes(), what or str(path))


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
