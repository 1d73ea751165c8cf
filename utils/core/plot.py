"""One figure style for every notebook, mean ± std bands, heatmaps, and a labelled-figure check.

``show(fig)`` refuses a figure whose axes lack an x or y label, or that draws several labelled
series without a legend: every figure in the curriculum is labelled (axes, units, legend).
Figures render at twice the pixel density (``retina``), so they stay sharp on high-resolution
screens and in the book.
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
    """Apply the curriculum's matplotlib style (call once in a notebook's setup cell).

    Inside IPython it also switches inline figures to ``retina`` PNGs (2x pixel density).
    """
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing to configure
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def band(
    ax: plt.Axes, x: Sequence[float], ys, *, label: str, color=None, alpha: float = 0.2, **line_kw
) -> None:
    """Plot the mean over seeds as a line and mean ± std as a shaded band.

    For data that are all positive (losses, norms, ratios: quantities usually drawn on a log
    axis) the band is computed in log space, as the geometric mean times/divided by the
    geometric std, so it never reaches down to zero (which a log axis would draw as a block to
    the bottom of the plot). Otherwise it is the arithmetic mean ± std.

    Args:
        ax: target axes. x: shared x values, length T.
        ys: per-seed curves, array-like [n_seeds, T] (NaN allowed: ignored in mean/std).
        label: legend label of the line.

    Raises:
        ValueError: ``ys`` not 2-D or not matching ``x``.
    """
    arr = np.asarray(ys, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"ys must be 2-D [n_seeds, T], got shape {arr.shape}")
    if arr.shape[1] != len(x):
        raise ValueError(f"ys has {arr.shape[1]} points per seed but x has {len(x)}")
    finite = arr[np.isfinite(arr)]
    positive = finite.size > 0 and bool((finite > 0).all())
    data = np.log(arr) if positive else arr
    mean = np.nanmean(data, axis=0)
    std = np.nanstd(data, axis=0, ddof=1) if arr.shape[0] > 1 else np.zeros_like(mean)
    low, mid, high = mean - std, mean, mean + std
    if positive:
        low, mid, high = np.exp(low), np.exp(mid), np.exp(high)
    (line,) = ax.plot(x, mid, label=label, color=color, **line_kw)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=alpha, linewidth=0)


def heatmap(
    ax: plt.Axes,
    values,
    *,
    xticklabels: Sequence,
    yticklabels: Sequence,
    label: str,
    fmt: str = "{:.2f}",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
):
    """A heatmap with readable per-cell numbers and a labelled colorbar over the whole range.

    Each annotation is black or white, whichever contrasts more with its cell's colour
    (relative luminance, WCAG 2.1), so the numbers stay readable in dark and light cells.

    Args:
        ax: target axes. values: array-like [rows, cols] (NaN cells are left blank).
        xticklabels, yticklabels: one label per column / row.
        label: the colorbar's label (the quantity and its unit).
        fmt: format of the per-cell numbers. cmap: a matplotlib colormap name.
        vmin, vmax: colour range; default the data's finite min and max (nothing clipped).

    Returns:
        the colorbar.

    Raises:
        ValueError: ``values`` not 2-D, or tick labels that do not match its shape.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"values must be 2-D [rows, cols], got shape {arr.shape}")
    if len(xticklabels) != arr.shape[1] or len(yticklabels) != arr.shape[0]:
        raise ValueError(
            f"need {arr.shape[1]} x tick labels and {arr.shape[0]} y tick labels, got "
            f"{len(xticklabels)} and {len(yticklabels)}"
        )
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if vmin is None and finite.size else vmin
    hi = float(finite.max()) if vmax is None and finite.size else vmax
    im = ax.imshow(arr, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(arr.shape[1]), [str(v) for v in xticklabels])
    ax.set_yticks(range(arr.shape[0]), [str(v) for v in yticklabels])
    ax.grid(False)
    for (r, c), v in np.ndenumerate(arr):
        if not np.isfinite(v):
            continue
        red, green, blue, _ = im.cmap(im.norm(v))
        lum = 0.2126 * red + 0.7152 * green + 0.0722 * blue  # luminance of the cell's colour
        ax.text(
            c,
            r,
            fmt.format(v),
            ha="center",
            va="center",
            fontsize=8,
            color="black" if lum > 0.5 else "white",
        )
    cbar = ax.figure.colorbar(im, ax=ax)
    cbar.set_label(label)
    return cbar


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


def _data_paths(ax: plt.Axes):
    """(path in display coordinates, filled?) for every line, band and marker set of ``ax``."""
    from matplotlib.path import Path as MPath

    for line in ax.lines:
        xy = np.asarray(line.get_xydata(), dtype=float)
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy):
            yield MPath(ax.transData.transform(xy)), False
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if len(coll.get_paths()) and offsets.size <= 2:  # bands (fill_between): filled polygons
            for path in coll.get_paths():
                if len(path.vertices):
                    yield path.transformed(coll.get_transform()), True
        elif offsets.size > 2:  # scatter markers
            pts = coll.get_offset_transform().transform(offsets)
            yield MPath(pts[np.isfinite(pts).all(1)]), False


def legend_covers_data(ax: plt.Axes) -> bool:
    """True when the legend box of ``ax`` overlaps a plotted line, band or marker."""
    legend = ax.get_legend()
    if legend is None:
        return False
    renderer = ax.figure.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for path, filled in _data_paths(ax):
        if filled and path.intersects_bbox(box, filled=True):
            return True
        if not filled:
            v = path.vertices
            in_x = (v[:, 0] >= box.x0) & (v[:, 0] <= box.x1)
            inside = in_x & (v[:, 1] >= box.y0) & (v[:, 1] <= box.y1)
            if inside.any() or (len(v) > 1 and path.intersects_bbox(box, filled=False)):
                return True
    return False


def place_legends(fig: plt.Figure) -> bool:
    """Put every axes legend where it covers no data: the first free corner or edge position,
    else outside the axes on the right (the figure grows to make room).

    Returns:
        True when a legend went outside its axes (the layout must then be redone).
    """
    outside = False
    fig.canvas.draw()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend_covers_data(ax):
            continue
        handles, labels = ax.get_legend_handles_labels()
        title = legend.get_title().get_text() or None
        for loc in (
            "upper right",
            "upper left",
            "lower left",
            "lower right",
            "center right",
            "center left",
            "upper center",
            "lower center",
        ):
            ax.legend(handles, labels, loc=loc, title=title)
            if not legend_covers_data(ax):
                break
        else:
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=title)
            outside = True
    return outside


def show(fig: plt.Figure | None = None) -> None:
    """Check that ``fig`` (default: the current figure) is fully labelled, move legends off the
    data (:func:`place_legends`), then show it.

    Raises:
        ValueError: listing every missing axis label, colorbar label or legend.
    """
    fig = fig or plt.gcf()
    problems = missing_labels(fig)
    if problems:
        plt.close(fig)
        raise ValueError("figure is not fully labelled: " + "; ".join(problems))
    fig.tight_layout()
    if place_legends(fig):  # a legend inside its axes leaves the layout as it is
        fig.tight_layout()
    plt.show()
    plt.close(fig)
