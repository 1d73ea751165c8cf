import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.core import plot  # noqa: E402


def test_band_draws_mean_line_and_checks_shapes():
    fig, ax = plt.subplots()
    ys = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
    plot.band(ax, [0, 1, 2], ys, label="a")
    assert np.allclose(ax.lines[0].get_ydata(), [1, 2, 3])
    with pytest.raises(ValueError, match="2-D"):
        plot.band(ax, [0, 1, 2], [1, 2, 3], label="b")
    with pytest.raises(ValueError, match="points per seed"):
        plot.band(ax, [0, 1], ys, label="c")
    plt.close(fig)


def test_show_refuses_unlabelled_figures_and_accepts_labelled():
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="a")
    ax.plot([1, 0], label="b")
    with pytest.raises(ValueError, match="no x label.*no y label.*no legend"):
        plot.show(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="a")
    ax.plot([1, 0], label="b")
    ax.set(xlabel="step", ylabel="loss")
    ax.legend()
    plot.show(fig)  # no error
    fig, ax = plt.subplots()
    im = ax.imshow(np.eye(3))
    ax.set(xlabel="key", ylabel="query")
    fig.colorbar(im)
    assert plot.missing_labels(fig) == ["axes 1: colorbar without a label"]
    plt.close(fig)
    fig, (ax, cax) = plt.subplots(1, 2)
    im = ax.imshow(np.eye(3))
    ax.set(xlabel="key", ylabel="query")
    cb = fig.colorbar(im, cax=cax)  # an explicit cax is a colorbar too
    assert plot.missing_labels(fig) == ["axes 1: colorbar without a label"]
    cb.set_label("weight")
    assert plot.missing_labels(fig) == []
    plt.close(fig)


def test_band_of_positive_data_stays_positive_on_a_log_axis():
    fig, ax = plt.subplots()
    ys = np.array([[1.0, 1e-3, 1e-6], [10.0, 1e-1, 1e-2]])  # mean - std < 0 at every point
    plot.band(ax, [0, 1, 2], ys, label="loss")
    low = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert (low > 0).all()
    # the line is the geometric mean
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.exp(np.log(ys).mean(0)))
    plt.close(fig)


def test_heatmap_contrast_colorbar_and_range():
    fig, ax = plt.subplots()
    vals = np.array([[0.1, 0.5], [0.9, np.nan]])
    cbar = plot.heatmap(ax, vals, xticklabels=["a", "b"], yticklabels=["r1", "r2"], label="acc")
    texts = {t.get_text(): t.get_color() for t in ax.texts}
    assert set(texts) == {"0.10", "0.50", "0.90"}  # the NaN cell stays blank
    assert texts["0.10"] == "white" and texts["0.90"] == "black"  # viridis: dark low, bright high
    assert cbar.ax.get_ylabel() == "acc"
    assert cbar.mappable.norm.vmin == 0.1 and cbar.mappable.norm.vmax == 0.9  # nothing clipped
    with pytest.raises(ValueError, match="tick labels"):
        plot.heatmap(ax, vals, xticklabels=["a"], yticklabels=["r1", "r2"], label="acc")
    plt.close(fig)


def test_place_legends_moves_a_legend_off_the_data():
    x = np.linspace(0, 1, 50)
    fig, ax = plt.subplots()
    ax.plot(x, np.full_like(x, 0.95), label="near the top")
    ax.plot(x, 1 - x, label="diagonal")
    ax.legend(loc="upper right")
    fig.canvas.draw()
    assert plot.legend_covers_data(ax)  # the detector sees the overlap ...
    assert plot.place_legends(fig) is False  # (inside the axes: no new layout needed)
    fig.canvas.draw()
    assert not plot.legend_covers_data(ax)  # ... and the legend moved to a free place
    plt.close(fig)


def test_place_legends_goes_outside_when_a_band_fills_the_axes():
    x = np.linspace(0, 1, 50)
    fig, ax = plt.subplots()
    ax.plot(x, x, label="mean")
    ax.fill_between(x, 0, 1, alpha=0.2, label="band")
    ax.legend()
    assert plot.place_legends(fig) is True  # outside: show() redoes the layout
    fig.canvas.draw()
    assert not plot.legend_covers_data(ax)
    assert ax.get_legend().get_window_extent().x0 > ax.get_window_extent().x1  # right of the axes
    plt.close(fig)
