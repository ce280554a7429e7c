"""Ensemble mean and standard deviation from per-batch partial sums.

Each cGAN batch records, per variable and grid point, how many members have a value
(count), their sum, and the sum of squared deviations from the batch's own mean (m2).
Batches combine exactly (Chan, Golub & LeVeque's pairwise update), so the product needs
no second read of the ensemble from the store, and the centred form keeps the standard
deviation accurate where the mean is large (surface pressure: 1e5 Pa, spread ~1e2 Pa).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensflow.errors import EnsflowError


@dataclass(frozen=True)
class Moments:
    count: np.ndarray  # members with a value, per point
    sum: np.ndarray  # float64
    m2: np.ndarray  # float64, squared deviations from sum / count


def of_members(values: np.ndarray) -> Moments:
    """Moments over axis 0 (members), NaN meaning no value."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0, dtype=np.int16)
    x = np.where(finite, values, 0.0).astype(np.float64)
    total = x.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 0.0)
    m2 = (np.where(finite, x - mean, 0.0) ** 2).sum(axis=0)
    return Moments(count, total, m2)


def combine(parts: Sequence[Moments]) -> Moments:
    count = sum((p.count.astype(np.int64) for p in parts), np.zeros_like(parts[0].count, np.int64))
    total = sum((p.sum for p in parts), np.zeros_like(parts[0].sum))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 0.0)
        m2 = np.zeros_like(total)
        for p in parts:
            part_mean = np.where(p.count > 0, p.sum / p.count, 0.0)
            m2 += p.m2 + p.count * (part_mean - mean) ** 2
    return Moments(count, total, m2)


def mean_std(m: Moments, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """As numpy's nanmean and nanstd(ddof) over the members: NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(m.count > 0, m.sum / m.count, np.nan)
        dof = m.count - ddof
        std = np.where(dof > 0, np.sqrt(np.maximum(m.m2, 0.0) / dof), np.nan)
    return mean, std


def save(path: str | Path, cycle: str, members: Sequence[int],
         moments: dict[str, Moments]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"members": np.asarray(members, np.int32),
                                     "cycle": np.asarray(cycle)}
    for name, m in moments.items():
        arrays |= {f"{name}/count": m.count, f"{name}/sum": m.sum, f"{name}/m2": m.m2}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load(path: str | Path, cycle: str) -> tuple[list[int], dict[str, Moments]]:
    with np.load(path, allow_pickle=False) as z:
        if str(z["cycle"]) != cycle:
            raise EnsflowError(f"{path}: partial sums of cycle {z['cycle']}, not {cycle}")
        names = {k.split("/")[0] for k in z.files if "/" in k}
        moments = {n: Moments(z[f"{n}/count"], z[f"{n}/sum"], z[f"{n}/m2"]) for n in names}
        return [int(m) for m in z["members"]], moments
