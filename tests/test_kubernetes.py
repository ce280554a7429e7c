"""profiles/kubernetes: a dry-run with the Kubernetes executor, and the pods its plugin asks for.

No cluster exists here, so a small Kubernetes API server on loopback stands in for one: it
accepts Job objects and reports them as running. Everything else is real: Snakemake with
the profile, the Kubernetes executor plugin, the GCS storage plugin against the GCS
emulator holding the inputs a resumed cycle would have.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BIN, REPO, copy_workflow, run_env

from ensflow.adapters.storage import Storage

pytestmark = pytest.mark.slow
CYCLE = "20251127_0000"
MEMBERS = [f"{m:03d}" for m in range(1, 51)]
PROFILE = yaml.safe_load((REPO / "profiles" / "kubernetes" / "config.yaml").read_text())


class FakeKubernetes(ThreadingHTTPServer):
    """Enough of the Kubernetes API for the executor plugin: Jobs are accepted and stay active."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []  # (namespace, Job object)
        self.secrets: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if m := re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs", self.path):
                    server.jobs.append((m.group(1), body))
                elif self.path.endswith("/secrets"):
                    server.secrets.append(body)
                self._reply(201, body)

            def do_GET(self) -> None:
                if "/jobs/" in self.path:
                    name = self.path.split("/jobs/")[1].split("/")[0]
                    self._reply(200, {"kind": "Job", "apiVersion": "batch/v1",
                                      "metadata": {"name": name}, "status": {"active": 1}})
                else:
                    self._reply(200, {"kind": "PodList", "apiVersion": "v1", "items": []})

            def do_DELETE(self) -> None:
                self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    server = FakeKubernetes()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server.url}}],
        "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    try:
        yield server, kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def storage_args(prefix: str) -> list[str]:
    return ["--default-storage-prefix", prefix, "--storage-gcs-project", "test-project"]


def test_profile_dry_run_with_the_kubernetes_executor(tmp_path, gcs_emulator):
    """50 members planned for the cluster, every file of the workflow under the storage prefix."""
    work = copy_workflow(tmp_path / "wf")
    prefix = "gs://ensflow-test/k8s-dry"
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--profile", "profiles/kubernetes",
         "--configfile", "config/operational.yaml", *storage_args(prefix)],
        cwd=work, env=run_env(STORAGE_EMULATOR_HOST=gcs_emulator), capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    for rule in ("fetch_input", "forecast", "upload", "prepare_input", "quest_member"):
        assert counts[rule] == "50", (rule, counts)
    # Snakemake's own files go to the storage prefix; none stays on the submitting machine.
    outputs = re.findall(r"^    output: (.*)$", out, re.M)
    assert outputs and all(o.startswith(f"{prefix}/") for line in outputs for o in line.split(", "))
    assert f"{prefix}/results/{CYCLE}/receipts/forecast_member_050.json" in out


def seed_resumed_cycle(prefix: str, scratch: Path) -> None:
    """What the storage holds once preflight and the input states are done: the member
    chains are what runs next."""
    storage = Storage()
    seed = scratch / "seed.json"
    seed.write_text(json.dumps({"ok": True}))
    storage.put_file(seed, f"{prefix}/results/{CYCLE}/preflight_aifs.json")
    time.sleep(1.1)  # later inputs must be newer than what they depend on
    storage.put_files([(seed, f"{prefix}/results/{CYCLE}/checkpoint.json")]
                      + [(seed, f"{prefix}/results/{CYCLE}/receipts/input_member_{m}.json")
                         for m in MEMBERS], parallel=8)


def option(argv: list[str], name: str) -> list[str]:
    """The values after `name` in a command line, up to the next option."""
    if name not in argv:
        return []
    values = []
    for arg in argv[argv.index(name) + 1:]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


def wait_for_jobs(server: FakeKubernetes, proc: subprocess.Popen[str], expected: int,
                  timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if len(server.jobs) != seen:
            seen, quiet_since = len(server.jobs), time.monotonic()
        if seen >= expected and time.monotonic() - quiet_since > 3:
            return
        time.sleep(0.2)


def test_pods_the_kubernetes_plugin_requests(tmp_path, gcs_env, fake_cluster):
    server, kubeconfig = fake_cluster
    work = copy_workflow(tmp_path / "wf")
    prefix = "gs://ensflow-test/k8s-run"
    seed_resumed_cycle(prefix, tmp_path)
    env = run_env(STORAGE_EMULATOR_HOST=gcs_env, KUBECONFIG=str(kubeconfig))
    log_file = tmp_path / "snakemake.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "snakemake"), "--profile", "profiles/kubernetes",
             "--configfile", "config/operational.yaml", *storage_args(prefix), "all"],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_jobs(server, proc, expected=len(MEMBERS) + 2)
        finally:
            proc.kill()  # the jobs would run forever on this cluster
            proc.wait(timeout=60)
    assert len(server.jobs) >= len(MEMBERS), log_file.read_text()[-3000:]

    pods = []
    for namespace, job in server.jobs:
        assert namespace == PROFILE["kubernetes-namespace"]
        spec = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        # pip (offline in the image) && deploy sources && run the job(s)
        argv = shlex.split(container["args"][-1].rsplit("&&", 1)[1])
        pods.append((option(argv, "--target-jobs"), spec, container, argv))

    members_seen = set()
    cpu_pods = 0
    for jobs, spec, container, argv in pods:
        rules = sorted(j.split(":")[0] for j in jobs)
        # Every pod: the image, the service account, the checkpoint volume, the storage.
        assert container["image"] == PROFILE["container-image"]
        assert spec["serviceAccountName"] == PROFILE["kubernetes-service-account-name"]
        assert {v["name"] for v in spec["volumes"]} >= {"workdir", "models"}
        assert option(argv, "--default-storage-provider") == ["gcs"]
        assert option(argv, "--default-storage-prefix") == [prefix]
        assert option(argv, "--configfiles") == ["config/operational.yaml"]
        requests = container["resources"]["requests"]
        if "forecast" in rules:
            # One member's download -> inference -> upload in one GPU pod.
            assert rules == ["fetch_input", "forecast", "upload"], jobs
            (member,) = {re.search(r"member=(\d{3})", j).group(1) for j in jobs}
            members_seen.add(member)
            limits = container["resources"]["limits"]
            assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == "1"
            assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "a2-ultragpu-1g"}
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert requests["ephemeral-storage"] == "60000M"
            # The input pickle and the GRIB files are temp files of the group: the pod is
            # told they are not needed outside, so they are never sent to storage.
            names = [Path(f).name for f in option(argv, "--unneeded-temp-files")]
            assert f"input_state_member_{member}.pkl" in names
            assert sum(n.endswith(".grib") and f"member{member}_" in n for n in names) == 11
        else:
            cpu_pods += 1
            assert "nvidia.com/gpu" not in requests
            assert not spec.get("nodeSelector") and not spec.get("tolerations")
    assert members_seen == set(MEMBERS)
    assert cpu_pods >= 1  # the cGAN preflight and the quest store setup run beside them


def test_the_watch_cronjob_is_a_valid_cronjob_running_a_one_shot_watch():
    """profiles/kubernetes/watch-cronjob.yaml as the Kubernetes client reads it, and its
    command as ensflow reads it: a one-shot watch with the cluster profile, one pass at a
    time, run directories on a volume, the same image and service account as the runs."""
    from kubernetes.client import ApiClient

    from ensflow.ops.cli import build_parser

    manifest = yaml.safe_load((REPO / "profiles/kubernetes/watch-cronjob.yaml").read_text())
    cron = ApiClient()._ApiClient__deserialize(manifest, "V1CronJob")
    assert cron.kind == "CronJob" and cron.api_version == "batch/v1"
    spec = cron.spec
    assert spec.concurrency_policy == "Forbid" and spec.time_zone == "Etc/UTC"
    assert len(spec.schedule.split()) == 5
    pod = spec.job_template.spec.template.spec
    assert pod.restart_policy == "Never" and spec.job_template.spec.backoff_limit == 0
    (container,) = pod.containers
    args = build_parser().parse_args(container.command[1:])
    assert container.command[0] == "ensflow" and args.command == "watch" and args.once
    assert (REPO / args.profile / "config.yaml").is_file()
    assert all((REPO / f).is_file() for f in args.configfile)
    profile = yaml.safe_load((REPO / args.profile / "config.yaml").read_text())
    assert container.image == profile["container-image"]
    assert pod.service_account_name == profile["kubernetes-service-account-name"]
    assert cron.metadata.namespace == profile["kubernetes-namespace"]
    (mount,) = container.volume_mounts
    assert mount.mount_path == f"{container.working_dir}/runs"  # watch.runs, kept between passes
    assert pod.volumes[0].persistent_volume_claim.claim_name
    containerfile = (REPO / "envs/Containerfile").read_text()
    assert f"WORKDIR {container.working_dir}" in containerfile and "COPY Snakefile" in containerfile
