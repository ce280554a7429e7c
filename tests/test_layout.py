import ast
import datetime as dt
import re
from pathlib import Path

import pytest

import ensflow
from ensflow.layout import (
    Layout,
    cycle_object,
    cycle_of_object,
    forecast_filename,
    forecast_object,
    forecast_windows,
    index_of,
    input_filename,
    input_object,
    job_label,
    opendata_object,
)


def test_eleven_windows_of_72_hours():
    w = forecast_windows(792, 72)
    assert len(w) == 11
    assert w[0] == (0, 72) and w[-1] == (720, 792)


def test_windows_must_tile_the_lead_time():
    with pytest.raises(ValueError):
        forecast_windows(792, 60)


def test_todays_names():
    assert forecast_filename("20251127_0000", 7, 72, 144) == \
        "aifs_ens_forecast_20251127_0000_member007_h072-144.grib"
    assert input_object("gs://b", "20251127_0000", 12) == \
        "gs://b/20251127_0000/input/input_state_member_012.pkl"
    assert forecast_object("gs://b/", "20251127_0000", "f.grib") == "gs://b/20251127_0000/forecasts/f.grib"


def test_opendata_layout_and_index():
    url = opendata_object("s3://ecmwf-forecasts", dt.datetime(2025, 11, 27, 0), 36)
    assert url == "s3://ecmwf-forecasts/20251127/00z/ifs/0p25/enfo/20251127000000-36h-enfo-ef.grib2"
    assert index_of(url).endswith("20251127000000-36h-enfo-ef.index")
    old = opendata_object("s3://x", dt.datetime(2024, 2, 1, 12), 0)
    assert old == "s3://x/20240201/12z/0p25/enfo/20240201120000-0h-enfo-ef.grib2"


CYCLE, OTHER = "20251127_0000", "20251128_0000"


def test_ensflow_objects_are_the_names_the_workflow_writes():
    assert cycle_object(f"input/{input_filename(7)}", CYCLE)
    assert cycle_object(f"forecasts/{forecast_filename(CYCLE, 50, 720, 792)}", CYCLE)
    assert cycle_object(".ensflow-preflight", CYCLE)
    assert not cycle_object(f"forecasts/{forecast_filename(OTHER, 1, 0, 72)}", CYCLE)
    assert not cycle_object(f"input/{input_filename(1)}.bak", CYCLE)
    assert not cycle_object(f"notes/{input_filename(1)}", CYCLE)
    assert not cycle_object(input_filename(1), CYCLE)
    url = input_object("gs://b/x", CYCLE, 3)
    assert cycle_of_object(url, CYCLE) == f"gs://b/x/{CYCLE}/"
    assert cycle_of_object(f"gs://b/x/{CYCLE}/notes.txt", CYCLE) is None


PATTERNS = ["input_receipt", "upload_receipt", "checkpoint_record", "demo_mirror_record",
            "input_state", "member_dir", "cgan_setup", "cgan_published", "quest_setup",
            "quest_fork", "quest_published", "quest_sanity", "quest_anomalies", "report"]


@pytest.mark.parametrize("name", PATTERNS)
def test_a_rules_pattern_filled_in_is_the_file_operations_read(name):
    """Rules use the wildcard form, status/report/purge the concrete one: the same place."""
    layout = Layout(results="/runs/results", scratch="scratch")
    method = getattr(layout, name)
    pattern = method()
    assert "{cycle}" in pattern
    concrete = method(CYCLE, 7) if "{member}" in pattern else method(CYCLE)
    assert pattern.format(cycle=CYCLE, member="007") == concrete


def test_job_files_follow_the_wildcards():
    layout = Layout()
    assert layout.job_log("forecast", "member") == {
        "log": "logs/{cycle}/forecast/member_{member}.log",
        "record": "logs/{cycle}/forecast/member_{member}.json"}
    assert layout.job_log("preflight", "stage")["log"] == "logs/{cycle}/preflight/{stage}.log"
    assert layout.job_log("cgan_setup")["log"] == "logs/{cycle}/cgan_setup.log"
    assert layout.job_log("demo_checkpoint", cycle=None)["log"] == "logs/demo_checkpoint.log"
    assert layout.job_benchmark("cgan_batch", "batch") == "benchmarks/{cycle}/cgan_batch/batch_{batch}.tsv"
    assert job_label({"cycle": CYCLE, "member": "003"}) == "member 003"
    assert job_label({"cycle": CYCLE, "stage": "aifs"}) == "aifs"


def test_job_files_pairs_each_record_with_its_log_and_benchmark(tmp_path):
    layout = Layout()
    for rel in ("logs/{c}/forecast/member_001.json", "logs/{c}/cgan_setup.json",
                "logs/demo_checkpoint.json", "logs/{o}/forecast/member_001.json"):
        path = tmp_path / rel.format(c=CYCLE, o=OTHER)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    found = {(str(f.record.relative_to(tmp_path)), str(f.benchmark.relative_to(tmp_path)), f.shared)
             for f in layout.job_files(tmp_path, CYCLE)}
    assert found == {
        (f"logs/{CYCLE}/forecast/member_001.json", f"benchmarks/{CYCLE}/forecast/member_001.tsv", False),
        (f"logs/{CYCLE}/cgan_setup.json", f"benchmarks/{CYCLE}/cgan_setup.tsv", False),
        ("logs/demo_checkpoint.json", "benchmarks/demo_checkpoint.tsv", True)}


# What a path or object name looks like when a module spells one (file suffixes the
# workflow writes, its folders, its object stems).
SPELLED_PATH = re.compile(
    r"\.(json|grib2?|nc|npz|npy|pkl|tsv|log|fork|png|html|index)$"
    r"|(^|/)(logs|benchmarks|results|receipts|forecasts|input|quest|cgan|scratch|\.snakemake)/"
    r"|member_\{|member_\d|_cgan\.nc|20yrCLIM|aifs_ens_|input_state_|\.ensflow")
# Temporary names of atomic writes, not places anything is found by.
ALLOWED = {("science/quest.py", ".npz"), ("ops/run_record.py", ".log")}


def test_no_module_but_the_layout_spells_a_path():
    """Every path and object name the rules, stages and operations use comes from
    ensflow.layout: a literal elsewhere would drift from it."""
    package = Path(ensflow.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package))
        if rel == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
                      and isinstance(n.body[0], ast.Expr)}
        found += [(rel, n.value) for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and id(n) not in docstrings and SPELLED_PATH.search(n.value)
                  and (rel, n.value) not in ALLOWED]
    assert found == []


# Which package folder (or module) may import which outside library: the README's boundaries.
# The demo world stands in for ECMWF and writes GRIB as ECMWF does, with eccodes of its own.
LIBRARY_DOORS = {
    "gribberish": {"adapters/grib_decode.py"},
    "eccodes": {"adapters/grib_decode.py", "adapters/grib_encode.py", "demo/"},
    "mir": {"adapters/regrid.py"},
    "icechunk": {"adapters/ensemble_store.py", "adapters/storage.py"},
    "pickle": {"adapters/safe_pickle.py", "adapters/ensemble_store.py"},
    "google.cloud.storage": {"adapters/storage.py"},
    "obstore": {"adapters/storage.py"},
}
# Package folders a folder may import from (core modules at the top level are open to all).
FOLDER_IMPORTS = {
    "adapters": {"adapters", "science"},  # the quest's grid and weeks check its climatology
    "science": {"adapters", "science"},
    "stages": {"adapters", "science", "ops"},  # ops.scratch: the member window
    "ops": {"adapters", "science", "ops"},
    "demo": {"adapters", "science", "demo"},
}


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return out


def test_boundaries_hold_without_exception():
    package = Path(ensflow.__file__).parent
    broken = []
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package))
        folder = rel.split("/")[0] if "/" in rel else None
        stage = rel.startswith("stages/")
        for name in _imports(ast.parse(path.read_text())):
            for library, doors in LIBRARY_DOORS.items():
                if (name == library or name.startswith(library + ".")) and not any(
                        rel == d or (d.endswith("/") and rel.startswith(d)) for d in doors):
                    broken.append(f"{rel} imports {name}")
            parts = name.split(".")
            if parts[0] != "ensflow" or len(parts) < 3 or parts[1] not in FOLDER_IMPORTS:
                continue
            if folder is not None and parts[1] not in FOLDER_IMPORTS[folder]:
                broken.append(f"{rel} imports {name}")
            if stage and parts[1] == "stages" and parts[2] != Path(rel).stem:
                broken.append(f"{rel} imports another stage: {name}")
    assert sorted(set(broken)) == []
