"""Fixtures: real protocol servers on loopback, and a scratch copy of the workflow to run."""

from __future__ import annotations

import os
import shutil
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
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "scripts", "config", "profiles", "envs", "report"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


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


class FaultProxy:
    """An HTTP proxy on loopback in front of a test server that misbehaves on purpose:
    answers 503 to the first `fail_first` requests, 500 to every `fail_every`-th one,
    drops Range headers (a 200 with the whole object instead of 206), or answers slowly.
    It counts requests (`seen`), those it failed (`failed`) and those asking for a byte
    range (`ranged`)."""

    def __init__(self, target: str, fail_first: int = 0, fail_every: int = 0,
                 ignore_range: bool = False, delay_s: float = 0.0) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        proxy = self
        self.target, self.fail_first, self.fail_every = target, fail_first, fail_every
        self.ignore_range, self.delay_s = ignore_range, delay_s
        self.seen = self.failed = self.ranged = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.seen += 1
                    proxy.ranged += "Range" in self.headers
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
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    if k.lower() not in {"transfer-encoding", "content-length", "connection"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
