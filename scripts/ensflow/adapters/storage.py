"""The one door to buckets: file://, gs:// and s3:// behind a small API.

Every byte to or from a bucket passes through a `Storage`, a frozen, picklable object that
holds the settings (the config's `gcs` and `opendata` sections) and creates its clients
when first used. Its clients are never pickled: a `Storage` handed to a worker process
arrives with its settings only and connects again there. No other module imports
google-cloud-storage or obstore, and Icechunk's storage is built here too.

Retries are the libraries' own, all from the one `retries` setting; nothing here loops:

- google-cloud-storage: every call gets `retry=` (`DEFAULT_RETRY`: 408, 429, 500, 502, 503,
  504, dropped connections; backoff from 0.5 s doubling up to 30 s) and a `timeout=`.
  Uploads get it too: they are idempotent here (the same bytes, their crc32c checked after
  the upload).
  google-api-core bounds a retry by time, not count: `retry_timeout_s`.
- obstore: `retry_config` (`max_retries` = retries, the same backoff, `retry_timeout`)
  and client timeouts on the S3Store.
- Icechunk: `StorageSettings.retries` (`max_tries` = retries + 1, the same backoff).

`retries: 0` turns retrying off in all three. What fails after that is a `StorageError`
naming the URL; so is a crc32c that does not match after an upload, and a server that
answers a byte-range request with the whole object. Snakemake's rule `retries:` then runs
the job again.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import google_crc32c

from ensflow.errors import ObjectNotFoundError, StorageError
from ensflow.layout import CRC32C_XATTR, gcs_emulator_account

if TYPE_CHECKING:
    from ensflow.config import Settings

log = logging.getLogger(__name__)
MiB = 1024 * 1024

# One backoff and one set of timeouts for every library.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10
REQUEST_TIMEOUT_S = 60


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


# ---------------------------------------------------------------- checksums


def crc32c_text(checksum: google_crc32c.Checksum) -> str:
    """As GCS gives an object's crc32c: base64 of the big-endian digest."""
    return base64.b64encode(checksum.digest()).decode()


def crc32c_bytes(data: bytes | bytearray | memoryview) -> str:
    return crc32c_text(google_crc32c.Checksum(bytes(data)))


# A file's crc32c kept with its bytes, in an extended attribute, as a bucket keeps an
# object's: set by whoever wrote the file and computed it in that pass (a forecast window,
# a file:// bucket's copy), so an upload or a stat need not read ~1 GB again. It holds only
# while the file's inode, size and mtime are those it names (layout.CRC32C_XATTR).


def _identity(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def remember_crc32c(path: str | Path, crc32c: str) -> None:
    """Keep `path`'s crc32c, computed while writing it (best effort: without user xattrs the
    next reader computes it)."""
    with contextlib.suppress(OSError):
        os.setxattr(path, CRC32C_XATTR, f"{_identity(os.stat(path))}:{crc32c}".encode())


def remembered_crc32c(path: str | Path) -> str | None:
    try:
        identity, _, crc = os.getxattr(path, CRC32C_XATTR).decode().rpartition(":")
        current = _identity(os.stat(path))
    except (OSError, UnicodeDecodeError):
        return None
    return crc if identity == current else None


def crc32c_file(path: str | Path) -> str:
    if (known := remembered_crc32c(path)) is not None:
        return known
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            checksum.update(chunk)
    return crc32c_text(checksum)


# ---------------------------------------------------------------- URLs


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket-or-root, key) for file://, gs:// and s3:// URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"file", "gs", "s3"}:
        raise StorageError(f"{url!r}: expected a file://, gs:// or s3:// URL")
    if scheme == "file":
        return scheme, "", rest
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


def absolute_url(url: str) -> str:
    """A relative file:// URL made absolute (for another process, maybe elsewhere)."""
    scheme, _, key = split_url(url)
    return f"file://{Path(key).resolve()}" if scheme == "file" else url


@contextlib.contextmanager
def _reported(what: str) -> Iterator[None]:
    """What the libraries raise once their retries are spent, as a StorageError naming `what`."""
    try:
        yield
    except StorageError:
        raise
    except FileNotFoundError:
        raise ObjectNotFoundError(f"{what}: no such object") from None
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise StorageError(f"{what}: {type(exc).__name__}: {text[:400]}") from exc


def _emulator_account(host: str) -> str:
    """A service-account file that points Icechunk's object_store at a GCS emulator, as
    STORAGE_EMULATOR_HOST points google-cloud-storage: object_store reads `gcs_base_url`
    and `disable_oauth` from the file (object_store gcp/credential.rs, the way its own
    tests reach fake-gcs-server); it has no environment variable for it."""
    path = gcs_emulator_account(Path(tempfile.gettempdir()), host, os.getuid())
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"gcs_base_url": host.rstrip("/"), "disable_oauth": True,
                                   "client_email": "", "private_key": "", "private_key_id": ""}))
        tmp.replace(path)
    return str(path)


# ---------------------------------------------------------------- the object


@dataclass(frozen=True)
class Storage:
    """Settings for buckets, and the door to them.

    Backends are made on first use and cached per instance (threads share them); pickling
    keeps only the settings, so the object can be handed to worker processes.
    """

    gcs_project: str | None = None
    gcs_credentials_file: str | None = None
    chunk_mb: int = 32
    parallel_uploads: int = 4
    retries: int = 6
    s3_endpoint_url: str | None = None
    s3_region: str = "eu-central-1"
    _backends: dict[tuple[str, str], Backend] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        """From the config's `gcs` section and `opendata.endpoint_url`/`region`
        (`AWS_ENDPOINT_URL` when the config names no endpoint)."""
        from ensflow.config import STORAGE_SETTINGS, SettingWithheld

        for key in STORAGE_SETTINGS:
            if not settings.handed(key):
                raise SettingWithheld(f"setting '{key}' is not among this job's params "
                                      "(ensflow.config.JOB_SETTINGS); buckets need it")
        gcs, od = settings.gcs, settings.opendata
        return cls(
            gcs_project=gcs.project,
            gcs_credentials_file=gcs.credentials_file,
            chunk_mb=gcs.chunk_mb,
            parallel_uploads=gcs.parallel_uploads,
            retries=gcs.retries,
            s3_endpoint_url=od.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            s3_region=od.region,
        )

    # ------------------------------------------------------------ pickling: settings only

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_backends", {})
        object.__setattr__(self, "_lock", threading.Lock())

    # ------------------------------------------------------------ the libraries' retries

    @property
    def retry_timeout_s(self) -> float:
        """How long one request is retried: the backoff caps of `retries` tries
        (0.5, 1, 2, … 30 s) plus one request's timeout."""
        backoff = sum(min(BACKOFF_INITIAL_S * 2 ** i, BACKOFF_MAX_S) for i in range(self.retries))
        return backoff + REQUEST_TIMEOUT_S

    def gcs_retry(self) -> Any:
        """google-cloud-storage's `retry=`: DEFAULT_RETRY with our backoff and time limit
        (None, no retries, when `retries` is 0)."""
        if self.retries <= 0:
            return None
        from google.cloud.storage.retry import DEFAULT_RETRY

        return (DEFAULT_RETRY.with_delay(initial=BACKOFF_INITIAL_S, maximum=BACKOFF_MAX_S,
                                         multiplier=2.0)
                .with_timeout(self.retry_timeout_s))

    def obstore_retry_config(self) -> dict[str, Any]:
        """obstore's `retry_config` (a RetryConfig dict)."""
        return {
            "max_retries": max(0, self.retries),
            "backoff": {"init_backoff": dt.timedelta(seconds=BACKOFF_INITIAL_S),
                        "max_backoff": dt.timedelta(seconds=BACKOFF_MAX_S), "base": 2},
            "retry_timeout": dt.timedelta(seconds=self.retry_timeout_s),
        }

    def icechunk_config(self) -> Any:
        """Icechunk's RepositoryConfig: its storage retries and timeouts from these settings."""
        import icechunk

        return icechunk.RepositoryConfig(storage=icechunk.StorageSettings(
            retries=icechunk.StorageRetriesSettings(
                max_tries=max(0, self.retries) + 1,
                initial_backoff_ms=int(BACKOFF_INITIAL_S * 1000),
                max_backoff_ms=int(BACKOFF_MAX_S * 1000)),
            timeouts=icechunk.StorageTimeoutSettings(
                connect_timeout_ms=CONNECT_TIMEOUT_S * 1000,
                read_timeout_ms=REQUEST_TIMEOUT_S * 1000),
        ))

    def icechunk_storage(self, url: str) -> Any:
        """The icechunk.Storage of a repository at file://, s3:// or gs://, reached as the
        buckets are: S3 endpoint, region and path style as the S3 backend, credentials
        from the environment; GCS with `gcs.credentials_file` when set. (Icechunk's
        retries come with `icechunk_config()`.)"""
        import icechunk

        scheme, bucket, key = split_url(url)
        prefix = key.strip("/") or None
        if scheme == "file":
            return icechunk.local_filesystem_storage(str(Path(key).absolute()))
        if scheme == "s3":
            endpoint = self.s3_endpoint_url
            return icechunk.s3_storage(
                bucket=bucket, prefix=prefix, region=self.s3_region, endpoint_url=endpoint,
                allow_http=bool(endpoint and endpoint.startswith("http://")),
                force_path_style=bool(endpoint), from_env=True)
        if self.gcs_credentials_file:
            return icechunk.gcs_storage(bucket=bucket, prefix=prefix,
                                        service_account_file=self.gcs_credentials_file)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            return icechunk.gcs_storage(bucket=bucket, prefix=prefix,
                                        service_account_file=_emulator_account(emulator))
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix, from_env=True)

    # ------------------------------------------------------------ backends

    def _backend(self, scheme: str, bucket: str) -> Backend:
        key = (scheme, bucket)
        backend = self._backends.get(key)
        if backend is None:
            with self._lock:
                backend = self._backends.get(key)
                if backend is None:
                    if scheme == "gs":
                        backend = GCSBackend(bucket, self)
                    elif scheme == "s3":
                        backend = S3Backend(bucket, self)
                    else:
                        backend = FileBackend("/")
                    self._backends[key] = backend
        return backend

    def _resolve(self, url: str) -> tuple[Backend, str]:
        scheme, bucket, key = split_url(url)
        if scheme == "file":
            return self._backend("file", ""), str(Path(key).absolute()).lstrip("/")
        return self._backend(scheme, bucket), key

    # ------------------------------------------------------------ the API

    def stat(self, url: str) -> ObjectInfo | None:
        """Size and crc32c (GCS, file) of an object; None when there is none."""
        with _reported(f"stat {url}"):
            backend, key = self._resolve(url)
            got = backend.stat(key)
        return None if got is None else ObjectInfo(url, got[0], got[1])

    def read_bytes(self, url: str) -> bytes:
        with _reported(f"read {url}"):
            backend, key = self._resolve(url)
            return backend.read_bytes(key)

    def read_ranges(self, url: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Byte ranges (offset, length) of one object, in the order asked."""
        with _reported(f"read ranges of {url}"):
            backend, key = self._resolve(url)
            parts = backend.read_ranges(key, ranges)
        for (offset, length), part in zip(ranges, parts, strict=True):
            if len(part) != length:
                raise StorageError(f"{url}: range at {offset} returned {len(part)} of {length} bytes")
        return parts

    def get_file(self, url: str, local: str | Path) -> ObjectInfo:
        """Download to `local` (written under a temporary name, then renamed)."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        with _reported(f"download {url}"):
            backend, key = self._resolve(url)
            backend.get_file(key, local)
        return ObjectInfo(url, local.stat().st_size, crc32c_file(local))

    def put_file(self, local: str | Path, url: str) -> Transfer:
        """Upload one file; skipped when the object already holds the same checksum."""
        local = Path(local)
        started = time.perf_counter()
        crc = crc32c_file(local)
        size = local.stat().st_size
        with _reported(f"upload {local} to {url}"):
            backend, key = self._resolve(url)
            existing = backend.stat(key)
            if existing is not None and existing[0] == size and existing[1] == crc:
                return Transfer(ObjectInfo(url, size, crc), True, time.perf_counter() - started)
            got_size, got_crc = backend.put_file(local, key, crc)
        if got_size != size:
            raise StorageError(f"{url}: {got_size} bytes after upload, local {local} has {size}")
        if got_crc is not None and got_crc != crc:
            raise StorageError(f"{url}: crc32c after upload is {got_crc}, local {local} has {crc}")
        return Transfer(ObjectInfo(url, got_size, got_crc or crc), False,
                        time.perf_counter() - started)

    def put_files(self, pairs: Iterable[tuple[str | Path, str]], parallel: int | None = None,
                  progress: Callable[[Transfer], None] | None = None) -> list[Transfer]:
        """Upload several files at once (`parallel_uploads` by default); results in the
        order given."""
        pairs = list(pairs)
        workers = max(1, min(parallel or self.parallel_uploads, len(pairs) or 1))

        def one(pair: tuple[str | Path, str]) -> Transfer:
            result = self.put_file(*pair)
            if progress:
                progress(result)
            return result

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, pairs))

    def list_prefix(self, url: str) -> list[ObjectInfo]:
        """Objects under a prefix, with sizes (checksums are not fetched)."""
        scheme, bucket, _ = split_url(url)
        base = "file:///" if scheme == "file" else f"{scheme}://{bucket}/"
        with _reported(f"list {url}"):
            backend, key = self._resolve(url)
            listed = backend.list(key)
        return [ObjectInfo(base + name, size, None) for name, size in listed]

    def delete(self, url: str) -> None:
        """Delete an object; one that is not there is no error."""
        with _reported(f"delete {url}"):
            backend, key = self._resolve(url)
            backend.delete(key)


# ---------------------------------------------------------------- backends


class Backend(Protocol):
    """One bucket. A missing object raises FileNotFoundError (stat returns None)."""

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
        return self._path(key).read_bytes()

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        with open(self._path(key), "rb") as f:
            for offset, length in ranges:
                f.seek(offset)
                out.append(f.read(length))
        return out

    def get_file(self, key: str, local: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(src)
        tmp = local.with_name(local.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
        checksum = google_crc32c.Checksum()  # of the bytes written, in the copy's one pass
        with open(local, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(8 * MiB):
                checksum.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
        remember_crc32c(dst, crc32c_text(checksum))  # what a bucket's object metadata says
        return dst.stat().st_size, crc32c_text(checksum)

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
    """google-cloud-storage: resumable uploads in chunks, crc32c verified after upload.

    Every call passes the library `retry=` (Storage.gcs_retry) and `timeout=`."""

    def __init__(self, bucket: str, storage: Storage) -> None:
        from google.cloud import storage as gcs

        if os.environ.get("STORAGE_EMULATOR_HOST") and not storage.gcs_credentials_file:
            from google.auth.credentials import AnonymousCredentials

            client = gcs.Client(project=storage.gcs_project or "ensflow-emulator",
                                credentials=AnonymousCredentials())
        elif storage.gcs_credentials_file:
            client = gcs.Client.from_service_account_json(
                storage.gcs_credentials_file, project=storage.gcs_project)
        else:
            client = gcs.Client(project=storage.gcs_project)
        self.client = client
        self.bucket = client.bucket(bucket)
        self.name = bucket
        self.chunk_size = storage.chunk_mb * MiB
        self.call = {"retry": storage.gcs_retry(), "timeout": (CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)}

    @contextlib.contextmanager
    def _found(self, key: str) -> Iterator[None]:
        from google.api_core.exceptions import NotFound

        try:
            yield
        except NotFound:
            raise FileNotFoundError(f"gs://{self.name}/{key}") from None

    def stat(self, key: str) -> tuple[int, str | None] | None:
        blob = self.bucket.get_blob(key, **self.call)
        return None if blob is None else (int(blob.size), blob.crc32c)

    def read_bytes(self, key: str) -> bytes:
        with self._found(key):
            return self.bucket.blob(key).download_as_bytes(checksum="crc32c", **self.call)

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        blob = self.bucket.blob(key)
        with self._found(key):
            return [blob.download_as_bytes(start=o, end=o + n - 1, checksum=None, **self.call)
                    for o, n in ranges]

    def get_file(self, key: str, local: Path) -> None:
        tmp = local.with_name(local.name + ".part")
        with self._found(key):
            self.bucket.blob(key, chunk_size=self.chunk_size).download_to_filename(
                str(tmp), checksum="crc32c", **self.call)
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        blob = self.bucket.blob(key, chunk_size=self.chunk_size)
        # GCS computes the object's crc32c itself: compared below with the one computed
        # here once, so the client need not checksum the file a second time
        blob.upload_from_filename(str(local), checksum=None, **self.call)
        blob.reload(**self.call)
        if blob.crc32c != crc32c:
            raise StorageError(f"gs://{self.name}/{key}: crc32c after upload is {blob.crc32c}, "
                               f"local file {local} has {crc32c}")
        return int(blob.size), blob.crc32c

    def list(self, prefix: str) -> list[tuple[str, int]]:
        blobs = self.client.list_blobs(self.name, prefix=prefix, **self.call)
        return sorted((b.name, int(b.size)) for b in blobs)

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(key).delete(**self.call)


class S3Backend:
    """obstore: anonymous byte-range reads of public buckets (ECMWF open data) and writes.

    The S3Store carries the retries (Storage.obstore_retry_config) and the timeouts."""

    def __init__(self, bucket: str, storage: Storage) -> None:
        from obstore.store import S3Store

        anonymous = not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"))
        kwargs: dict[str, Any] = {"region": storage.s3_region, "skip_signature": anonymous}
        client_options: dict[str, Any] = {"timeout": f"{REQUEST_TIMEOUT_S}s",
                                          "connect_timeout": f"{CONNECT_TIMEOUT_S}s"}
        endpoint = storage.s3_endpoint_url
        if endpoint:
            kwargs["endpoint"] = endpoint
            kwargs["virtual_hosted_style_request"] = False
            if endpoint.startswith("http://"):
                client_options["allow_http"] = True
        self.store = S3Store(bucket, client_options=client_options,
                             retry_config=storage.obstore_retry_config(), **kwargs)  # type: ignore[arg-type]
        self.name = bucket
        self.chunk_size = storage.chunk_mb * MiB

    @contextlib.contextmanager
    def _whole_object_refused(self, key: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if "non-partial response" in str(exc):
                raise StorageError(f"s3://{self.name}/{key}: the server answered a byte-range "
                                   "request with the whole object (HTTP 200, not 206)") from None
            raise

    def stat(self, key: str) -> tuple[int, str | None] | None:
        import obstore
        from obstore.exceptions import PermissionDeniedError

        try:
            meta = obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        except PermissionDeniedError:
            # Some servers refuse anonymous HEAD where GET is public: ask for one byte.
            try:
                with self._whole_object_refused(key):
                    meta = obstore.get(self.store, key, options={"range": (0, 1)}).meta
            except FileNotFoundError:
                return None
        return int(meta["size"]), None

    def read_bytes(self, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self.store, key).bytes())

    def read_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        import obstore

        with self._whole_object_refused(key):
            parts = obstore.get_ranges(self.store, key, starts=[o for o, _ in ranges],
                                       lengths=[n for _, n in ranges])
        return [bytes(p) for p in parts]

    def get_file(self, key: str, local: Path) -> None:
        tmp = local.with_name(local.name + ".part")
        tmp.write_bytes(self.read_bytes(key))
        os.replace(tmp, local)

    def put_file(self, local: Path, key: str, crc32c: str) -> tuple[int, str | None]:
        import obstore

        obstore.put(self.store, key, Path(local), chunk_size=self.chunk_size)
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
