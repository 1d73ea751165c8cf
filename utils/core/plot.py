"""One figure style for every notebook, mean ± std bands, and a labelled-figure check.

``show(fig)`` refuses a figure whose axes lack an x or y label, or that draws several labelled
series without a legend: every figure in the curriculum is labelled (axes, units, legend).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
    "axes.titlesize": 11,
}


def style() -> None:
    """Apply the curriculum's matplotlib style (call once in a notebook's setup cell)."""
    mpl.rcParams.update(STYLE)


def band(
    ax: plt.Axes, x: Sequence[float], ys, *, label: str, color=None, alpha: float = 0.2, **line_kw
) -> None:
    """Plot the mean over seeds as a line and mean ± std as a shaded band.

    Args:
        ax: target axes. x: shared x values, length T.
        ys: per-seed curves, array-like [n_seeds, T] (NaN allowed: ignored in mean/std).
        label: legend label of the line.
    """
    arr = np.asarray(ys, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"ys must be 2-D [n_seeds, T], got shape {arr.shape}")
    if arr.shape[1] != len(x):
        raise ValueError(f"ys has {arr.shape[1]} points per seed but x has {len(x)}")
    mean = np.nanmean(arr, axis=0)
    std = np.nanstd(arr, axis=0, ddof=1) if arr.shape[0] > 1 else np.zeros_like(mean)
    (line,) = ax.plot(x, mean, label=label, color=color, **line_kw)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=alpha, linewidth=0)


def missing_labels(fig: plt.Figure) -> list[str]:
    """What a figure lacks: axes without x/y label, colorbars without a label, a missing legend."""
    problems = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        name = ax.get_title() or f"axes {i}"
        # fig.colorbar(...) labels its own axes "<colorbar>"; one drawn into a given cax is
        # recognised by the Colorbar that matplotlib attaches to it.
        if ax.get_label() == "<colorbar>" or getattr(ax, "_colorbar", None) is not None:
            if not (ax.get_ylabel() or ax.get_xlabel()):
                problems.append(f"{name}: colorbar without a label")
            continue
        if not ax.get_xlabel():
            problems.append(f"{name}: no x label")
        if not ax.get_ylabel():
            problems.append(f"{name}: no y label")
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1 and ax.get_legend() is None and not fig.legends:
            problems.append(f"{name}: {len(handles)} labelled series but no legend")
    return problems


def show(fig: plt.Figure | None = None) -> None:
    """Check that ``fig`` (default: the current figure) is fully labelled, then show it.

    Raises:
        ValueError: listing every missing axis label, colorbar label or legend.
    """
    fig = fig or plt.gcf()
    problems = missing_labels(fig)
    if problems:
        plt.close(fig)
        raise ValueError("figure is not fully labelled: " + "; ".join(problems))
    fig.tight_layout()
    plt.show()
    plt.close(fig)
