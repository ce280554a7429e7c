"""Software environments: the per-rule conda envs and the cluster image agree with pyproject."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib

import yaml
from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CORE = PROJECT["dependencies"]
EXTRAS = PROJECT["optional-dependencies"]
GPU_ONLY = ("torch", "anemoi.inference", "earthkit")


def env_pip(name: str) -> list[str]:
    env = yaml.safe_load((REPO / "envs" / name).read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return pip


def rule_envs() -> dict[str, tuple[str | None, str | None]]:
    """rule -> (conda env file, script) as written in rules/*.smk."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            conda = re.search(r'conda:\s*\n\s*"\.\./envs/([\w.]+)"', block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', block)
            out[name] = (conda and conda.group(1), script and script.group(1))
    return out


def test_conda_envs_list_exactly_pyprojects_dependencies():
    assert env_pip("cpu.yaml") == [*CORE, "--editable .."]
    assert env_pip("gpu.yaml") == [*CORE, *EXTRAS["inference"], "--editable ..[inference]"]


def test_every_job_rule_has_an_env_and_only_the_gpu_stage_gets_the_gpu_one():
    envs = rule_envs()
    jobs = {rule: env for rule, (env, script) in envs.items() if script}
    assert jobs and all(env in ("cpu.yaml", "gpu.yaml") for env in jobs.values()), jobs
    gpu = {rule for rule, env in jobs.items() if env == "gpu.yaml"}
    assert {"forecast", "fetch_input", "upload", "demo_checkpoint"} <= gpu
    assert not {r for r in gpu if r.startswith(("cgan", "quest"))}
    assert jobs["prepare_input"] == "cpu.yaml"


def is_module(dotted: str) -> bool:
    return (REPO / "scripts" / (dotted.replace(".", "/") + ".py")).is_file()


def test_cpu_rules_run_without_the_gpu_stack():
    """Import what every CPU-env script imports with torch and anemoi-inference made
    unimportable: the CPU env really does not need them."""
    modules = set()
    for env, script in rule_envs().values():
        if env != "cpu.yaml" or not script:
            continue
        tree = ast.parse((REPO / "scripts" / script).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ensflow"):
                modules |= {node.module} | {f"{node.module}.{a.name}" for a in node.names
                                             if is_module(f"{node.module}.{a.name}")}
    assert "ensflow.stages.cgan" in modules and "ensflow.stages.quest_stage" in modules
    code = "\n".join([
        "import sys",
        *(f"sys.modules[{m!r}] = None" for m in GPU_ONLY),
        *(f"import {m}" for m in sorted(modules)),
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'earthkit')"
        " or m.startswith('anemoi.inference')]",
        "assert not [m for m in loaded if sys.modules[m] is not None], loaded",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_container_image_installs_the_package_with_what_the_cluster_needs():
    recipe = (REPO / "envs" / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.12", recipe, re.M)
    installs = re.findall(r'pip install --editable "\.\[([\w,]+)\]"', recipe)
    assert installs and set(installs[0].split(",")) == {"inference", "cluster"}
    assert set(installs[0].split(",")) <= set(EXTRAS)
    # The executor's per-pod `pip install` of the storage plugin is served from a wheel in
    # the image, offline: the same plugin and range as the `cluster` extra.
    (plugin,) = [r for r in EXTRAS["cluster"] if r.startswith("snakemake-storage-plugin-gcs")]
    assert f'pip download --no-deps --dest /opt/ensflow/wheels "{plugin}"' in recipe
    for setting in ("PIP_NO_INDEX=1", "PIP_FIND_LINKS=/opt/ensflow/wheels", "PIP_NO_DEPS=1"):
        assert setting in recipe
    profile = yaml.safe_load((REPO / "profiles" / "kubernetes" / "config.yaml").read_text())
    assert profile["default-storage-provider"] == "gcs"
    assert "software-deployment-method" not in profile  # everything is in the image


def test_each_rule_names_itself_for_its_log_benchmark_and_settings():
    """A rule says its own name where it asks the layout for its log and benchmark and the
    config for its job's settings: copying a rule cannot leave it writing another's files."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            named = re.findall(r'(job_log|job_benchmark|settings_for)\(f?"([\w{}.]+)"', block)
            for helper, given in named:
                assert given == name or given == f"{name}_{{wc.stage}}", (smk.name, name, helper)
            if "script:" in block:
                assert {h for h, _ in named} >= {"job_log", "settings_for"}, (smk.name, name)
