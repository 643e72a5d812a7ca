"""PNG pictures of a training run and of what a network has learnt (matplotlib).

- :func:`plot_curves`: loss (or accuracy) per epoch, training against validation. The gap
  between the two curves is what to look at: both high and close together is
  *under-fitting* (the model is too weak or has not trained long enough); training still
  improving while validation gets worse is *over-fitting* (the model learns its training
  images by heart).
- :func:`plot_confusion_matrix`: which classes are mistaken for which.
- :func:`plot_filters`: the weights of a convolution, one small picture per filter.
- :func:`plot_feature_maps`: what each filter of a convolution answers to one image.
- :func:`plot_image`: an input image, as the network receives it.

The figures are drawn with matplotlib's object API on the Agg (PNG) canvas, without pyplot:
nothing here changes the matplotlib backend of the program that imports it, and no window
ever opens. Every function returns the path it wrote.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_curves", "plot_confusion_matrix", "plot_filters", "plot_feature_maps",
           "plot_image"]

_DPI = 110


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("the plots need matplotlib: pip install matplotlib") from None
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(figure, path) -> str:
    path = os.fspath(path)
    figure.savefig(path, format="png", dpi=_DPI)
    return path


def plot_curves(history: dict, path, metric: str = "loss", best_epoch: int | None = None) -> str:
    """Training and validation ``metric`` ('loss' or 'accuracy') per epoch, to ``path``.

    ``history`` holds lists ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``,
    ``val_acc`` (accuracies as fractions; they are drawn in percent). ``best_epoch`` (the
    epoch of the lowest validation loss, the one kept as best.npz) is marked by a line.
    """
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
    key = "loss" if metric == "loss" else "acc"
    epochs = np.asarray(history["epoch"])
    train = np.asarray(history[f"train_{key}"], dtype=float)
    val = np.asarray(history[f"val_{key}"], dtype=float)
    if metric == "accuracy":
        train, val = 100 * train, 100 * val
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    marker = "o" if len(epochs) <= 30 else None
    ax.plot(epochs, train, marker=marker, markersize=3, label="training")
    ax.plot(epochs, val, marker=marker, markersize=3, label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="0.5", linestyle=":", linewidth=1,
                   label=f"best validation loss (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss" if metric == "loss" else "accuracy (%)")
    if metric == "loss" and np.all(train > 0) and np.all(val > 0) and \
            max(train.max(), val.max()) > 20 * min(train.min(), val.min()):
        ax.set_yscale("log")
    if len(epochs) and epochs.max() <= 20:
        ax.set_xticks(epochs)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{'Loss' if metric == 'loss' else 'Accuracy'}: training vs validation")
    fig.supxlabel("validation far worse than training, or getting worse: over-fitting; "
                  "both poor: under-fitting", fontsize=7, color="0.35")
    return _save(fig, path)


def plot_confusion_matrix(cm, class_names, path, title: str = "Confusion matrix") -> str:
    """The confusion matrix ``cm[true, predicted]`` as a heat map, to ``path``.

    The colour of a cell is the share of the true class (its row) that got that answer, so
    that classes of different sizes compare; the number written in it is the count.
    """
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = [str(n) for n in class_names]
    totals = cm.sum(axis=1, keepdims=True)
    shares = cm / np.maximum(totals, 1)
    size = max(4.5, 0.5 * k + 2.5)
    fig = _figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    rotate = max(len(n) for n in names) > 3
    ax.set_xticklabels(names, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 30:
        fontsize = 9 if k <= 12 else 6
        for i in range(k):
            for j in range(k):
                if cm[i, j] or i == j:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                            fontsize=fontsize, color="white" if shares[i, j] > 0.5 else "black")
    ax.set_title(title)
    return _save(fig, path)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _montage(tiles: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """Tiles ``(n, h, w[, 3])`` side by side, ``cols`` per row, with NaN gaps between them.

    One picture with one ``imshow`` is drawn much faster than a grid of many axes.
    """
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / cols)
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad) + tiles.shape[3:]
    sheet = np.full(shape, np.nan)
    for index in range(n):
        r, c = divmod(index, cols)
        sheet[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tiles[index]
    return sheet


def _label_tiles(ax, n: int, cols: int, h: int, w: int, pad: int, labels=None) -> None:
    """Write each tile's number (or label) just above its top-left corner."""
    if n > 64:
        return
    for index in range(n):
        r, c = divmod(index, cols)
        ax.text(c * (w + pad) - 0.5, r * (h + pad) - 0.55,
                str(index if labels is None else labels[index]),
                fontsize=6, va="bottom", ha="left", color="0.3")


def _sheet_figure(rows: int, cols: int, h: int, w: int, pad: int):
    aspect = (rows * (h + pad)) / (cols * (w + pad))
    width = min(max(4.0, 0.9 * cols + 1.5), 12.0)
    return _figure(width, min(max(3.0, (width - 1.2) * aspect + 1.0), 14.0))


def plot_filters(weight, path, title: str = "Filters") -> str:
    """The filters of a convolution, weight ``(C_out, C_in, kH, kW)``, as a grid, to ``path``.

    One input channel: each filter in a red-blue colour scale centred on zero (red:
    positive weights, blue: negative, white: zero), the same scale for all, so strong and
    weak filters can be told apart. Three input channels (colour images): each filter as a
    small colour picture, stretched to the full range on its own. Otherwise, one row per
    filter and one column per input channel (at most 32 of each), on the red-blue scale.
    """
    from matplotlib import colormaps

    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"expected a (C_out, C_in, kH, kW) weight, got shape {weight.shape}")
    c_out, c_in, h, w = weight.shape
    pad = 1
    limit = float(np.abs(weight).max()) or 1.0
    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    if c_in == 3:
        low = weight.min(axis=(1, 2, 3), keepdims=True)
        span = weight.max(axis=(1, 2, 3), keepdims=True) - low
        tiles = ((weight - low) / np.where(span > 0, span, 1.0)).transpose(0, 2, 3, 1)
        rows, cols = _grid(c_out)
        sheet = _montage(tiles, cols, pad)
        sheet[np.isnan(sheet)] = 1.0                     # white gaps
        fig = _sheet_figure(rows, cols, h, w, pad)
        ax = fig.add_subplot()
        ax.imshow(sheet, interpolation="nearest")
        _label_tiles(ax, c_out, cols, h, w, pad)
    else:
        if c_in == 1:
            tiles, cols, n = weight[:, 0], _grid(c_out)[1], c_out
            labels = None
        else:
            shown_out, shown_in = min(c_out, 32), min(c_in, 32)
            tiles = weight[:shown_out, :shown_in].reshape(-1, h, w)
            cols, n, labels = shown_in, shown_out * shown_in, None
            if (shown_out, shown_in) != (c_out, c_in):
                title += f"\n(first {shown_out} filters x {shown_in} input channels)"
            else:
                title += "\n(a row per filter, a column per input channel)"
        rows = math.ceil(n / cols)
        fig = _sheet_figure(rows, cols, h, w, pad)
        ax = fig.add_subplot()
        image = ax.imshow(_montage(tiles, cols, pad), cmap=cmap, vmin=-limit, vmax=limit,
                          interpolation="nearest")
        if c_in == 1:
            _label_tiles(ax, n, cols, h, w, pad, labels)
        fig.colorbar(image, ax=ax, shrink=0.7, label="weight")
    ax.axis("off")
    ax.set_title(title, fontsize=10, pad=12)
    return _save(fig, path)


def plot_feature_maps(maps, path, title: str = "Feature maps", max_maps: int = 64) -> str:
    """The feature maps ``(C, H, W)`` of one image, one tile per channel, to ``path``.

    Each map is stretched to its own range (dark: its lowest value, yellow: its highest),
    so that the pattern shows even where the values are small; a map that is the same
    everywhere (e.g. all zero after a ReLU) is drawn dark. At most ``max_maps`` are drawn.
    """
    from matplotlib import colormaps

    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"expected feature maps (C, H, W), got shape {maps.shape}")
    count = min(maps.shape[0], max_maps)
    tiles = maps[:count]
    low = tiles.min(axis=(1, 2), keepdims=True)
    span = tiles.max(axis=(1, 2), keepdims=True) - low
    tiles = (tiles - low) / np.where(span > 0, span, 1.0)
    h, w = tiles.shape[1:]
    pad = max(1, round(min(h, w) / 8))
    rows, cols = _grid(count)
    fig = _sheet_figure(rows, cols, h, w, pad)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="white")
    ax.imshow(_montage(tiles, cols, pad), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    _label_tiles(ax, count, cols, h, w, pad)
    ax.axis("off")
    if count < maps.shape[0]:
        title += f" (first {count} of {maps.shape[0]})"
    ax.set_title(title, fontsize=10, pad=12)
    return _save(fig, path)


def plot_image(image, path, title: str = "") -> str:
    """One image ``(C, H, W)`` with values in [0, 1] (grey if C == 1), to ``path``."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (1 or 3, H, W), got shape {image.shape}")
    fig = _figure(3.6, 3.8)
    ax = fig.add_subplot()
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0.0, 1.0), interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
