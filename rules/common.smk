# Names shared by every stage: paths, wildcards, helpers.
from ensflow.cycle import member_id
from ensflow.naming import forecast_windows, window_tag

CYCLE = SETTINGS.cycle
MEMBERS = [member_id(m) for m in SETTINGS.members]
RESULTS = config["results"]
SCRATCH = config["scratch"]
WINDOWS = [
    window_tag(a, b)
    for a, b in forecast_windows(
        config["forecast"]["lead_time"], config["forecast"]["hours_per_file"]
    )
]

MEMBER_DIR = f"{SCRATCH}/{{cycle}}/member_{{member}}"
INPUT_RECEIPT = f"{RESULTS}/{{cycle}}/receipts/input_member_{{member}}.json"
UPLOAD_RECEIPT = f"{RESULTS}/{{cycle}}/receipts/forecast_member_{{member}}.json"
FORECAST_GRIBS = [
    f"{MEMBER_DIR}/aifs_ens_forecast_{{cycle}}_member{{member}}_{w}.grib"
    for w in WINDOWS
]
CHECKPOINT_RECORD = f"{RESULTS}/{{cycle}}/checkpoint.json"
DEMO_MIRROR_RECORD = f"{RESULTS}/{{cycle}}/demo_mirror.json"


wildcard_constraints:
    cycle=r"\d{8}_\d{4}",
    member=r"\d{3}",


def demo_inputs(wildcards):
    """In the demo the checkpoint and open-data mirror are made by rules."""
    if not config["synthetic"]:
        return {}
    return {
        "checkpoint": config["checkpoint"],
        "mirror": DEMO_MIRROR_RECORD.format(cycle=wildcards.cycle),
    }
