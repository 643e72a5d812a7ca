"""Classification metrics on plain NumPy arrays: accuracy, confusion matrix, per-class accuracy.

All functions take ``(targets, predictions)`` in that order (as scikit-learn does):
``targets`` the true class of each example, ``predictions`` either the predicted class of
each example, ``(N,)`` ints, or the model's scores, ``(N, K)`` logits or probabilities, of
which the largest is taken.

The confusion matrix ``cm`` has one row per *true* class and one column per *predicted*
class: ``cm[i, j]`` counts the examples of class ``i`` that the model called ``j``. The
diagonal holds the right answers, so

- accuracy = ``trace(cm) / cm.sum()``,
- the accuracy of class ``i`` (its *recall*) = ``cm[i, i] / cm[i].sum()``,
- column ``j`` off the diagonal shows what else gets mistaken for ``j``.

::

    >>> import numpy as np
    >>> cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], num_classes=3)
    >>> cm.tolist()
    [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    >>> per_class_accuracy(cm).tolist()
    [0.5, 1.0, 1.0]
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_predictions", "accuracy", "confusion_matrix", "per_class_accuracy",
           "format_confusion_matrix", "format_per_class_accuracy"]


def _targets(targets) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"targets must be a 1-d array of class indices, got shape "
                         f"{targets.shape}")
    if targets.size and not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be integers (class indices), got dtype {targets.dtype}")
    return targets.astype(np.int64, copy=False)


def as_predictions(predictions) -> np.ndarray:
    """Predicted classes ``(N,)``: ``predictions`` itself if 1-d, else the arg-max of each row."""
    predictions = np.asarray(getattr(predictions, "data", predictions))
    if predictions.ndim == 2:
        return predictions.argmax(axis=1).astype(np.int64)
    if predictions.ndim != 1:
        raise ValueError(f"predictions must be (N,) classes or (N, K) scores, got shape "
                         f"{predictions.shape}")
    if predictions.size and not np.issubdtype(predictions.dtype, np.integer):
        raise TypeError(f"1-d predictions must be integers (class indices), got dtype "
                        f"{predictions.dtype}; pass (N, K) scores to take their arg-max")
    return predictions.astype(np.int64, copy=False)


def _pair(targets, predictions) -> tuple[np.ndarray, np.ndarray]:
    targets, predictions = _targets(targets), as_predictions(predictions)
    if targets.shape != predictions.shape:
        raise ValueError(f"targets and predictions differ in length: {targets.shape[0]} "
                         f"against {predictions.shape[0]}")
    return targets, predictions


def accuracy(targets, predictions) -> float:
    """The fraction of examples whose predicted class is the true one (NaN if there are none)."""
    targets, predictions = _pair(targets, predictions)
    if targets.size == 0:
        return float("nan")
    return float(np.mean(targets == predictions))


def confusion_matrix(targets, predictions, num_classes: int | None = None) -> np.ndarray:
    """The ``(K, K)`` int64 matrix: ``cm[true, predicted]`` counts (see the module docstring).

    ``num_classes`` defaults to one more than the largest class seen.
    """
    targets, predictions = _pair(targets, predictions)
    seen = int(max(targets.max(initial=-1), predictions.max(initial=-1))) + 1
    if num_classes is None:
        num_classes = seen
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if min(targets.min(initial=0), predictions.min(initial=0)) < 0 or seen > num_classes:
        raise ValueError(f"class indices must be in 0..{num_classes - 1}, got values from "
                         f"{min(targets.min(initial=0), predictions.min(initial=0))} to "
                         f"{seen - 1}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets, predictions), 1)
    return cm


def per_class_accuracy(cm) -> np.ndarray:
    """``cm[i, i] / cm[i].sum()`` for each class ``i`` (NaN for a class with no examples)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {cm.shape}")
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def _class_labels(class_names, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    names = [str(name) for name in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    return names


def format_per_class_accuracy(cm, class_names=None) -> str:
    """A text table: each class with its number of examples, right answers and accuracy."""
    cm = np.asarray(cm)
    names = _class_labels(class_names, cm.shape[0])
    accs = per_class_accuracy(cm)
    width = max(5, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'images':>6}  {'right':>6}  {'accuracy':>8}"]
    for name, row, right, acc in zip(names, cm, np.diag(cm), accs):
        shown = "-" if np.isnan(acc) else f"{100 * acc:.2f}%"
        lines.append(f"{name:<{width}}  {int(row.sum()):>6}  {int(right):>6}  {shown:>8}")
    return "\n".join(lines)


def format_confusion_matrix(cm, class_names=None) -> str:
    """A text table of ``cm``: rows are the true classes, columns the predicted ones.

    When the class names are not just their numbers (Fashion-MNIST, CIFAR-10), the columns
    are headed by the class numbers and each row is labelled ``number name``.
    """
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = _class_labels(class_names, k)
    numbered = names == [str(i) for i in range(k)]
    rows = names if numbered else [f"{i} {name}" for i, name in enumerate(names)]
    columns = names if numbered else [str(i) for i in range(k)]
    cell = max(3, len(str(int(cm.max(initial=0)))), *(len(c) for c in columns))
    corner = "true \\ predicted"
    label = max(len(corner), *(len(r) for r in rows))
    lines = [f"{corner:<{label}} " + " ".join(f"{c:>{cell}}" for c in columns)]
    for name, counts in zip(rows, cm):
        lines.append(f"{name:<{label}} " + " ".join(f"{int(v):>{cell}}" for v in counts))
    return "\n".join(lines)
