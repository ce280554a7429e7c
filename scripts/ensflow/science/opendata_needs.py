"""What a stage reads from ECMWF open data, object by object, and what of it is not there.

One answer for two questions: the preflight asks it before a run (fail now, not at member
39) and `ensflow watch` asks it to know when a cycle can start (every index of every
member, field and step the stage reads is published).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ensflow.adapters import checkpoint_info, opendata, opendata_requests
from ensflow.adapters.opendata import Key, OpenDataLayout
from ensflow.adapters.storage import Storage
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime
from ensflow.errors import EnsflowError, IndexNotPublishedError
from ensflow.layout import index_of

STAGES = ("aifs", "cgan")


def describe_key(key: Key) -> str:
    param, levtype, level, number = key
    return f"{param}{'/' + str(level) if level is not None else ''} ({levtype}) member {number}"


@dataclass
class Needs:
    """Per open-data object (the GRIB URL), the index keys wanted and how to name each;
    `problems` holds what could not even be asked (a variable ECMWF does not publish)."""

    objects: dict[str, dict[Key, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def want(self, url: str, key: Key, described: str) -> None:
        self.objects.setdefault(url, {}).setdefault(key, described)

    @property
    def count(self) -> int:
        return sum(len(keys) for keys in self.objects.values())


def for_stage(settings: Settings, stage: str) -> Needs:
    """The open data one stage of one cycle reads ('aifs': every input of every member at
    every input date, as the checkpoint asks; 'cgan': every variable, member and step)."""
    if stage == "cgan":
        return _cgan(settings)
    if stage == "aifs":
        return _aifs(settings)
    raise ValueError(f"no open-data needs for stage {stage!r} (known: {', '.join(STAGES)})")


def _cgan(settings: Settings) -> Needs:
    from ensflow.science.cgan_plan import plan_from

    plan = plan_from(settings)
    needs = Needs()
    for step in plan.all_steps:
        for url, members in plan.objects(step).items():
            for v in plan.variables:
                if step in plan.fetch_steps(v):
                    for m in members:
                        key = (v.param, v.levtype, v.levelist, m)
                        needs.want(url, key, describe_key(key))
    return needs


def _aifs(settings: Settings) -> Needs:
    from ensflow.science.input_state import input_dates

    layout = OpenDataLayout.from_settings(settings.opendata)
    info = checkpoint_info.read(settings.checkpoint)  # ConfigError naming the file
    needs = Needs()
    for date in input_dates(cycle_datetime(settings.cycle), info.timestep_hours):
        for n in settings.members:
            try:
                requests = opendata_requests.for_member(info, date, n)
            except EnsflowError as exc:
                needs.problems.append(str(exc))
                return needs
            for r in requests:
                needs.want(r.url(layout), r.key, f"member {n}: {r.describe()}")
    return needs


class IndexCache:
    """Indices found complete so far. ECMWF does not change an index once published, so
    a long-running watcher reads a complete one once; any other is asked again next time."""

    def __init__(self) -> None:
        self.complete: dict[str, set[Key]] = {}

    def keys(self, storage: Storage, url: str) -> set[Key] | None:
        """The keys the object's index lists, or None while the index is not there."""
        if url in self.complete:
            return self.complete[url]
        try:  # one GET: no stat first (a ranged probe some servers answer with 200)
            messages = opendata.load_index(storage, url)
        except IndexNotPublishedError:
            return None
        return {(m.param, m.levtype, m.levelist, m.number) for m in messages}


def missing(storage: Storage, needs: Needs, cache: IndexCache | None = None,
            shown: int = 20) -> list[str]:
    """One line per object that is not complete: its index not published or unreadable,
    or the fields its index does not list (the first `shown` named). Empty when all is
    there."""
    cache = cache or IndexCache()
    lines = list(needs.problems)
    for url, wanted in needs.objects.items():
        try:
            listed = cache.keys(storage, url)
        except EnsflowError as exc:
            lines.append(str(exc))
            continue
        if listed is None:
            lines.append(f"{index_of(url)}: not published ({len(wanted)} field(s) wanted)")
            continue
        absent = {key: described for key, described in wanted.items() if key not in listed}
        if absent:
            members = ", ".join(str(m) for m in sorted({key[3] for key in absent}))
            lines.append(f"{url}: missing from the index: {_first(absent.values(), shown)} "
                         f"({len(absent)} field(s) of member(s) {members})")
        else:
            cache.complete[url] = listed
    return lines


def _first(items: Iterable[str], shown: int) -> str:
    items = list(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
