"""`snakemake --profile gpu` / `--profile kubernetes` as typed apply exactly profiles/<name>.

Snakemake's own argument parsing runs in a subprocess (it caches its config directories in a
global), in the repo root, with XDG_CONFIG_HOME in a temporary directory where the test installed
the named profiles: the machine's own ~/.config plays no part.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, REPO

from ensflow.errors import EnsflowError
from ensflow.ops.profiles import install_profiles

PROFILES = REPO / "profiles"

# Runs snakemake.cli.parse_args(argv) and prints the parsed namespace as JSON, every value
# reduced to plain data (sets sorted, enums by name, Resources by their raw value) so that two
# parses in two processes compare equal exactly when the settings are equal.
PARSE = r"""
import dataclasses, enum, json, re, sys
from pathlib import Path
from snakemake.cli import parse_args
from snakemake.resources import Resource

def norm(v, depth=0):
    if depth > 8:
        return repr(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if v is dataclasses.MISSING:
        return "<MISSING>"
    if isinstance(v, enum.Enum):
        return f"{type(v).__name__}.{v.name}"
    if isinstance(v, Path):
        return f"Path({v})"
    if isinstance(v, Resource):
        return {"Resource": v.name, "value": norm(v.raw if v.is_evaluable() else v._value)}
    if isinstance(v, dict):
        return {str(k): norm(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x, depth + 1) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((norm(x, depth + 1) for x in v), key=json.dumps)
    if hasattr(v, "__dict__") and not callable(v):
        return {"type": type(v).__qualname__, **norm(vars(v), depth + 1)}
    return re.sub(r" at 0x[0-9a-f]+", "", repr(v))

_, args = parse_args(json.loads(sys.argv[1]))
print(json.dumps({k: norm(v) for k, v in vars(args).items()}, sort_keys=True))
"""

# Record which profile was asked for, not what it set: these legitimately differ.
SOURCE_ATTRS = {"profile", "workflow_profile"}


def snakemake_env(xdg: Path) -> dict[str, str]:
    """The environment without SNAKEMAKE_* settings, Snakemake's config lookup pointed at xdg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    env["XDG_CONFIG_HOME"] = str(xdg)
    env["XDG_CONFIG_DIRS"] = str(xdg / "site")  # keep /etc/xdg/snakemake out as well
    return env


def parse(argv: list[str], xdg: Path) -> tuple[dict, str]:
    """Snakemake's parse of argv, typed in the repo root: (settings, stderr)."""
    proc = subprocess.run([sys.executable, "-c", PARSE, json.dumps(argv)], cwd=REPO,
                          env=snakemake_env(xdg), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"snakemake {' '.join(argv)} failed:\n{proc.stderr}"
    return json.loads(proc.stdout), proc.stderr


def _value(value: object, profile_dir: Path) -> str:
    """A scalar as Snakemake's ProfileConfigFileParser passes it on (paths made profile-relative)."""
    text = os.path.expanduser(os.path.expandvars(str(value)))
    return str(profile_dir / text) if (profile_dir / text).exists() else text


def profile_as_flags(profile_dir: Path) -> list[str]:
    """The profile's settings as explicit command-line flags, the way the profile parser does it.

    (snakemake/profiles.py ProfileConfigFileParser, then configargparse's
    convert_item_to_command_line_arg: a list -> `--key v1 v2`, true -> `--key`, false -> nothing,
    a scalar -> `--key=value`, a mapping for a key=value option -> its `k=v` list.)
    """
    settings = yaml.safe_load((profile_dir / "config.yaml").read_text())
    flags: list[str] = []
    for key, value in settings.items():
        flag = f"--{key}"
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, list):
            flags += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            if key == "set-resources":
                items = [f"{r}:{k}={v}" for r, d in value.items() for k, v in d.items()]
            else:
                items = [f"{k}={v}" for k, v in value.items()]
            flags += [flag, *items]
        else:
            flags.append(f"{flag}={_value(value, profile_dir)}")
    return flags


def diff(expected: dict, got: dict) -> str:
    a = json.dumps(expected, indent=1, sort_keys=True).splitlines()
    b = json.dumps(got, indent=1, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "profile file as flags", "--profile", lineterm=""))


@pytest.fixture(scope="module")
def xdg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config home with gpu and kubernetes installed the way the setup installs them."""
    home = tmp_path_factory.mktemp("xdg")
    install_profiles(PROFILES, home / "snakemake")
    return home


@pytest.mark.parametrize("profile", ["gpu", "profiles/gpu", "kubernetes", "profiles/kubernetes",
                                     "profiles/demo"])
def test_profile_applies_exactly_its_file(profile: str, xdg: Path) -> None:
    name = Path(profile).name
    got, stderr = parse(["--profile", profile], xdg)
    expected, _ = parse([*profile_as_flags(PROFILES / name), "--workflow-profile", "none"], xdg)
    assert got["profile"] == [profile]
    # No workflow profile (profiles/default) is applied beside the one asked for.
    assert "workflow specific profile" not in stderr, stderr
    assert f"Using profile {profile} for setting default command line arguments." in stderr
    for attrs in (got, expected):
        for key in SOURCE_ATTRS:
            attrs.pop(key, None)
    assert got == expected, "settings differ from " + f"profiles/{name}/config.yaml:\n" + diff(
        expected, got)
    headline = {"gpu": {"cores": 8, "keep_going": True},
                "kubernetes": {"executor": "kubernetes", "jobs": 60, "keep_going": True},
                "demo": {"cores": 2}}[name]
    for key, value in headline.items():
        assert got[key] == value, (key, got[key])


def test_without_profile_nothing_is_applied(xdg: Path) -> None:
    """A plain `snakemake` here picks up no workflow profile (there is no profiles/default)."""
    got, stderr = parse([], xdg)
    assert "profile" not in stderr, stderr
    assert got["cores"] is None and got["executor"] is None


def test_installer_links_then_reports_already_installed(tmp_path: Path) -> None:
    user = tmp_path / "config" / "snakemake"
    lines = install_profiles(PROFILES, user)
    assert len(lines) == 2
    for name, line in zip(("gpu", "kubernetes"), lines, strict=True):
        target = user / name
        assert target.is_symlink()
        assert Path(os.readlink(target)) == (PROFILES / name).resolve()  # absolute, resolved
        assert (target / "config.yaml").read_bytes() == (PROFILES / name / "config.yaml").read_bytes()
        assert line.startswith(f"{name}: installed {target} -> ")
    again = install_profiles(PROFILES, user)
    assert [line.split(":")[0] for line in again] == ["gpu", "kubernetes"]
    assert all("already installed" in line for line in again), again


def _snapshot(path: Path) -> object:
    """Everything about path that an installer could change."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    return ("dir", sorted((p.name, p.read_bytes(), p.stat().st_mtime_ns) for p in path.iterdir()),
            path.stat().st_mtime_ns)


def test_installer_keeps_a_different_profile(tmp_path: Path) -> None:
    user = tmp_path / "snakemake"
    (user / "gpu").mkdir(parents=True)
    (user / "gpu" / "config.yaml").write_text("cores: 1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Even with the same content, a link elsewhere is someone else's profile.
    (elsewhere / "config.yaml").write_bytes((PROFILES / "kubernetes" / "config.yaml").read_bytes())
    (user / "kubernetes").symlink_to(elsewhere)
    before = {name: _snapshot(user / name) for name in ("gpu", "kubernetes")}
    kept = {name: (user / name / "config.yaml").read_bytes() for name in ("gpu", "kubernetes")}

    lines = install_profiles(PROFILES, user)

    assert {name: _snapshot(user / name) for name in ("gpu", "kubernetes")} == before
    assert {name: (user / name / "config.yaml").read_bytes() for name in before} == kept
    for name, line in zip(("gpu", "kubernetes"), lines, strict=True):
        assert "different profile" in line and str(user / name) in line, line
        assert f"`--profile {name}` uses that one" in line, line
        assert f"`--profile profiles/{name}` uses the repo's" in line, line
    assert str(elsewhere) in lines[1]


def test_installer_keeps_an_identical_copy(tmp_path: Path) -> None:
    user = tmp_path / "snakemake"
    (user / "gpu").mkdir(parents=True)
    (user / "gpu" / "config.yaml").write_bytes((PROFILES / "gpu" / "config.yaml").read_bytes())
    before = _snapshot(user / "gpu")
    line = install_profiles(PROFILES, user, names=("gpu",))[0]
    assert _snapshot(user / "gpu") == before and not (user / "gpu").is_symlink()
    assert line.startswith(f"gpu: kept {user / 'gpu'}, a copy with the same config.yaml"), line


def test_installer_needs_the_repo_profile(tmp_path: Path) -> None:
    with pytest.raises(EnsflowError, match="no profile demo2"):
        install_profiles(PROFILES, tmp_path, names=("demo2",))
    assert not list(tmp_path.iterdir())


def test_cli_installs_into_snakemakes_user_config_dir(tmp_path: Path) -> None:
    """`ensflow install-profiles` with no --user-dir uses Snakemake's own user config directory."""
    env = snakemake_env(tmp_path)
    run = [str(BIN / "ensflow"), "install-profiles", "--profiles-dir", str(PROFILES)]
    first = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    for name in ("gpu", "kubernetes"):
        assert Path(os.readlink(tmp_path / "snakemake" / name)) == (PROFILES / name).resolve()
    assert first.stdout.count("installed") == 2, first.stdout
    second = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert second.stdout.count("already installed") == 2, second.stdout


def _fake_venv(root: Path) -> Path:
    """A venv whose python skips `pip install` (the real one is set up) and whose ensflow is real."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / "bin" / "ensflow").symlink_to(BIN / "ensflow")
    return venv


def test_bootstrap_installs_the_named_profiles(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "envs" / "bootstrap.sh"), str(venv), "dev"],
                          cwd=tmp_path, env=snakemake_env(tmp_path / "xdg"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("gpu", "kubernetes"):
        link = tmp_path / "xdg" / "snakemake" / name
        assert Path(os.readlink(link)) == (PROFILES / name).resolve()
        assert f"{name}: installed {link}" in proc.stdout, proc.stdout


def test_bootstrap_keeps_a_different_profile_and_succeeds(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    mine = tmp_path / "xdg" / "snakemake" / "gpu"
    mine.mkdir(parents=True)
    (mine / "config.yaml").write_text("cores: 64\n")
    proc = subprocess.run(["bash", str(REPO / "envs" / "bootstrap.sh"), str(venv), "dev"],
                          cwd=tmp_path, env=snakemake_env(tmp_path / "xdg"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (mine / "config.yaml").read_text() == "cores: 64\n" and not mine.is_symlink()
    assert f"gpu: kept the different profile {mine}" in proc.stdout, proc.stdout
    assert (tmp_path / "xdg" / "snakemake" / "kubernetes").is_symlink()
