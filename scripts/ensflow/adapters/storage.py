"""The one door to buckets: file://, gs:// and s3:// behind a small API.

Every byte to or from a bucket passes here, so retries, checksums, credentials and
progress live in one place. No other module imports google-cloud-storage or obstore.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import google_crc32c

from ensflow.errors import StorageError

if TYPE_CHECKING:
    from ensflow.config import Settings

log = logging.getLogger(__name__)
MiB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    url: str
    size: int
    crc32c: str | None  # base64 of the big-endian CRC32C, as GCS reports it


@dataclass(frozen=True)
class Transfer:
    info: ObjectInfo
    skipped: bool
    seconds: float


@dataclass
class StorageOptions:
    """Settings from the config's `gcs` and `opendata` sections."""

    gcs_project: str | None = None
    gcs_credentials_file: str | None = None
    chunk_mb: int = 32
    parallel_uploads: int = 4
    retries: int = 6
    s3_endpoint_url: str | None = None
    s3_region: str = "eu-central-1"
    extra: dict[str, Any] = field(default_factory=dict)


_options = StorageOptions()


def configure(options: StorageOptions) -> None:
    global _options
    _options = options
    _backend.cache_clear()


def current_options() -> StorageOptions:
    return _options


def ensure_configured(options: StorageOptions) -> None:
    """Configure once per process (worker processes get the parent's options this way)."""
    if options != _options:
        configure(options)


def options_from(settings: Settings) -> StorageOptions:
    gcs, od = settings.gcs, settings.opendata
    return StorageOptions(
        gcs_project=gcs.project,
        gcs_credentials_file=gcs.credentials_file,
        chunk_mb=gcs.chunk_mb,
        parallel_uploads=gcs.parallel_uploads,
        retries=gcs.retries,
        s3_endpoint_url=od.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
        s3_region=od.region,
    )


# ---------------------------------------------------------------- checksums


def crc32c_bytes(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(google_crc32c.Checksum(bytes(data)).digest()).decode()


def crc32c_file(path: str | Path) -> str:
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


# ---------------------------------------------------------------- retries


def _transient(exc: BaseException) -> bool:
    """Worth another try: throttling, server errors, dropped connections."""
    if "non-partial response" in str(exc):
        return False  # the server ignores byte ranges: asking again will not help
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    code = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(code, int) and (code == 429 or 500 <= code < 600):
        return True
    name = type(exc).__name__
    return name in {
        "ConnectionError", "ChunkedEncodingError", "ReadTimeout", "ConnectTimeout",
        "ProtocolError", "RemoteDisconnected", "DataCorruption", "ChecksumMismatch",
        "GenericError",
    } or "timed out" in str(exc).lower()


def with_retries[T](fn: Callable[[], T], what: str, retries: int | None = None,
                 base_delay: float = 0.5) -> T:
    """Run fn, retrying transient failures with exponential backoff and jitter."""
    attempts = (retries if retries is not None else _options.retries) + 1
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not _transient(exc):
                raise
            delay = min(30.0, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("%s: %s (try %d of %d), retrying in %.1fs",
                        what, type(exc).__name__, attempt, attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- backends


class Backend(Protocol):
    def stat(self, key: str) -> tuple[int, str | None] | None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]: ...
    def get_file(self, key: str, local: Path) -> None: ...
    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]: ...
    def list(self, prefix: str) -> list[tuple[str, int]]: ...
    def delete(self, key: str) -> None: ...


class FileBackend:
    """A directory standing in for a bucket (the demo); writes are rename-atomic."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def stat(self, key: str) -> tuple[int, str | None] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        return p.stat().st_size, crc32c_file(p)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{self._path(key)}: no such object") from None

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        try:
            with open(self._path(key), "rb") as f:
                for offset, length in ranges:
                    f.seek(offset)
                    out.append(f.read(length))
        except FileNotFoundError:
            raise StorageError(f"{self._path(key)}: no such object") from None
        return out

    def get_file(self, key: str, local: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"{src}: no such object")
        tmp = local.with_name(local.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
        shutil.copyfile(local, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        return dst.stat().st_size, crc32c_file(dst)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        base = self._path(prefix)
        if base.is_file():
            return [(prefix, base.stat().st_size)]
        if not base.is_dir():
            return []
        return sorted(
            (str(p.relative_to(self.root)), p.stat().st_size)
            for p in base.rglob("*") if p.is_file() and not p.name.endswith(".part")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class GCSBackend:
    """google-cloud-storage: resumable uploads in chunks, crc32c verified after upload."""

    def __init__(self, bucket: str) -> None:
        from google.cloud import storage as gcs

        if os.environ.get("STORAGE_EMULATOR_HOST") and not _options.gcs_credentials_file:
            from google.auth.credentials import AnonymousCredentials

            client = gcs.Client(project=_options.gcs_project or "ensflow-emulator",
                                credentials=AnonymousCredentials())
        elif _options.gcs_credentials_file:
            client = gcs.Client.from_service_account_json(
                _options.gcs_credentials_file, project=_options.gcs_project)
        else:
            client = gcs.Client(project=_options.gcs_project)
        self.bucket = client.bucket(bucket)
        self.name = bucket

    def stat(self, key: str) -> tuple[int, str | None] | None:
        blob = with_retries(lambda: self.bucket.get_blob(key), f"stat gs://{self.name}/{key}")
        return None if blob is None else (int(blob.size), blob.crc32c)

    def read_bytes(self, key: str) -> bytes:
        return with_retries(lambda: self.bucket.blob(key).download_as_bytes(checksum="crc32c"),
                            f"read gs://{self.name}/{key}")

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        blob = self.bucket.blob(key)
        return [
            with_retries(lambda o=o, n=n: blob.download_as_bytes(start=o, end=o + n - 1,
                                                                 checksum=None),
                         f"range gs://{self.name}/{key}")
            for o, n in ranges
        ]

    def get_file(self, key: str, local: Path) -> None:
        tmp = local.with_name(local.name + ".part")
        with_retries(lambda: self.bucket.blob(key, chunk_size=_options.chunk_mb * MiB)
                     .download_to_filename(str(tmp), checksum="crc32c"),
                     f"download gs://{self.name}/{key}")
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        def upload() -> tuple[int, str | None]:
            blob = self.bucket.blob(key, chunk_size=_options.chunk_mb * MiB)
            blob.upload_from_filename(str(local), checksum="crc32c")
            blob.reload()
            if blob.crc32c != crc32c:
                raise StorageError(
                    f"gs://{self.name}/{key}: crc32c after upload is {blob.crc32c}, "
                    f"local file {local} has {crc32c}")
            return int(blob.size), blob.crc32c

        return with_retries(upload, f"upload {local.name} to gs://{self.name}/{key}")

    def list(self, prefix: str) -> list[tuple[str, int]]:
        blobs = with_retries(lambda: list(self.bucket.client.list_blobs(self.name, prefix=prefix)),
                             f"list gs://{self.name}/{prefix}")
        return sorted((b.name, int(b.size)) for b in blobs)

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            with_retries(lambda: self.bucket.blob(key).delete(), f"delete gs://{self.name}/{key}")


class S3Backend:
    """obstore: anonymous byte-range reads of public buckets (ECMWF open data) and writes."""

    def __init__(self, bucket: str) -> None:
        from obstore.store import S3Store

        anonymous = not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))
        kwargs: dict[str, Any] = {"region": _options.s3_region, "skip_signature": anonymous}
        client_options: dict[str, Any] = {"timeout": "60s", "connect_timeout": "10s"}
        if _options.s3_endpoint_url:
            kwargs["endpoint"] = _options.s3_endpoint_url
            kwargs["virtual_hosted_style_request"] = False
            if _options.s3_endpoint_url.startswith("http://"):
                client_options["allow_http"] = True
        self.store = S3Store(bucket, client_options=client_options, **kwargs)
        self.name = bucket

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return with_retries(fn, what)
        except FileNotFoundError:
            raise StorageError(f"{what}: no such object") from None
        except Exception as exc:
            if "non-partial response" in str(exc):
                raise StorageError(f"{what}: the server answered a byte-range request with the "
                                   "whole object (HTTP 200, not 206)") from None
            raise

    def stat(self, key: str) -> tuple[int, str | None] | None:
        import obstore
        from obstore.exceptions import PermissionDeniedError

        what = f"stat s3://{self.name}/{key}"
        try:
            meta = with_retries(lambda: obstore.head(self.store, key), what)
        except FileNotFoundError:
            return None
        except PermissionDeniedError:
            # Some servers refuse anonymous HEAD where GET is public: ask for one byte.
            try:
                meta = with_retries(lambda: obstore.get(self.store, key, options={"range": (0, 1)}).meta,
                                    what)
            except FileNotFoundError:
                return None
        return int(meta["size"]), None

    def read_bytes(self, key: str) -> bytes:
        import obstore

        return self._call(lambda: bytes(obstore.get(self.store, key).bytes()),
                          f"read s3://{self.name}/{key}")

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        import obstore

        starts = [o for o, _ in ranges]
        lengths = [n for _, n in ranges]
        parts = self._call(
            lambda: obstore.get_ranges(self.store, key, starts=starts, lengths=lengths),
            f"ranges s3://{self.name}/{key}")
        return [bytes(p) for p in parts]

    def get_file(self, key: str, local: Path) -> None:
        tmp = local.with_name(local.name + ".part")
        tmp.write_bytes(self.read_bytes(key))
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        import obstore

        with_retries(lambda: obstore.put(self.store, key, Path(local),
                                         chunk_size=_options.chunk_mb * MiB),
                     f"upload {local.name} to s3://{self.name}/{key}")
        size = self.stat(key)
        if size is None or size[0] != local.stat().st_size:
            raise StorageError(f"s3://{self.name}/{key}: size after upload does not match {local}")
        return size[0], None

    def list(self, prefix: str) -> list[tuple[str, int]]:
        import obstore

        out: list[tuple[str, int]] = []
        for batch in obstore.list(self.store, prefix=prefix):
            out.extend((m["path"], int(m["size"])) for m in batch)
        return sorted(out)

    def delete(self, key: str) -> None:
        import obstore

        obstore.delete(self.store, key)


# ---------------------------------------------------------------- URL dispatch


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket-or-root, key) for file://, gs:// and s3:// URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"file", "gs", "s3"}:
        raise StorageError(f"{url!r}: expected a file://, gs:// or s3:// URL")
    if scheme == "file":
        return scheme, "", rest
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


@cache
def _backend(scheme: str, bucket: str) -> Backend:
    if scheme == "gs":
        return GCSBackend(bucket)
    if scheme == "s3":
        return S3Backend(bucket)
    return FileBackend("/")


def _resolve(url: str) -> tuple[Backend, str]:
    scheme, bucket, key = split_url(url)
    if scheme == "file":
        return _backend("file", ""), str(Path(key).absolute()).lstrip("/")
    return _backend(scheme, bucket), key


def stat(url: str) -> ObjectInfo | None:
    backend, key = _resolve(url)
    got = backend.stat(key)
    return None if got is None else ObjectInfo(url, got[0], got[1])


def read_bytes(url: str) -> bytes:
    backend, key = _resolve(url)
    return backend.read_bytes(key)


def read_ranges(url: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """Byte ranges (offset, length) of one object, in the order asked."""
    backend, key = _resolve(url)
    parts = backend.read_ranges(key, ranges)
    for (offset, length), part in zip(ranges, parts, strict=True):
        if len(part) != length:
            raise StorageError(f"{url}: range at {offset} returned {len(part)} of {length} bytes")
    return parts


def get_file(url: str, local: str | Path) -> ObjectInfo:
    """Download to `local` (written under a temporary name, then renamed)."""
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    backend, key = _resolve(url)
    backend.get_file(key, local)
    return ObjectInfo(url, local.stat().st_size, crc32c_file(local))


def put_file(local: str | Path, url: str) -> Transfer:
    """Upload one file; skipped when the object already holds the same checksum."""
    local = Path(local)
    started = time.perf_counter()
    crc = crc32c_file(local)
    size = local.stat().st_size
    backend, key = _resolve(url)
    existing = backend.stat(key)
    if existing is not None and existing[0] == size and existing[1] == crc:
        return Transfer(ObjectInfo(url, size, crc), True, time.perf_counter() - started)
    got_size, got_crc = backend.put_file(local, key, crc)
    if got_size != size:
        raise StorageError(f"{url}: {got_size} bytes after upload, local {local} has {size}")
    return Transfer(ObjectInfo(url, got_size, got_crc or crc), False, time.perf_counter() - started)


def put_files(pairs: Iterable[tuple[str | Path, str]], parallel: int | None = None,
              progress: Callable[[Transfer], None] | None = None) -> list[Transfer]:
    """Upload several files at once; results in the order given."""
    pairs = list(pairs)
    workers = max(1, min(parallel or _options.parallel_uploads, len(pairs) or 1))

    def one(pair: tuple[str | Path, str]) -> Transfer:
        result = put_file(*pair)
        if progress:
            progress(result)
        return result

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, pairs))


def list_prefix(url: str) -> list[ObjectInfo]:
    """Objects under a prefix, with sizes (checksums are not fetched)."""
    scheme, bucket, _ = split_url(url)
    backend, key = _resolve(url)
    base = "file:///" if scheme == "file" else f"{scheme}://{bucket}/"
    return [ObjectInfo(base + name, size, None) for name, size in backend.list(key)]


def delete(url: str) -> None:
    backend, key = _resolve(url)
    backend.delete(key)
