"""cyconv.training: the training loop, metrics and plots behind ``cyconv train``.

- :mod:`~cyconv.training.trainer`: :class:`Trainer` (epochs, progress bar, validation,
  checkpoints, resume, early stopping, Ctrl-C) and :func:`evaluate`.
- :mod:`~cyconv.training.metrics`: accuracy, confusion matrix, per-class accuracy.
- :mod:`~cyconv.training.plots`: loss/accuracy curves, confusion matrix, filters, feature
  maps, as PNG files (matplotlib, Agg).
- :mod:`~cyconv.training.config`: :class:`TrainConfig`, the per-dataset recipes, and the
  builders of the data, model, optimizer and schedule of a run.
- :mod:`~cyconv.training.experiment`: whole runs: :func:`train`, :func:`load_run`,
  :func:`evaluate_checkpoint`, :func:`visualize_checkpoint`.
- :mod:`~cyconv.training.images`: reading an image file for a model.

From Python, the same run as ``cyconv train --epochs 5``::

    from cyconv.training import TrainConfig, train
    result = train(TrainConfig(dataset="digits", epochs=5), out_dir="runs/try")
    print(result.test.accuracy)

matplotlib is imported only when a plot is drawn, tqdm only when a progress bar is shown.
"""

from . import metrics, plots
from .config import RECIPES, TrainConfig
from .experiment import (Run, TrainResult, evaluate_checkpoint, load_checkpoint, load_run,
                         train, visualize_checkpoint)
from .images import load_image
from .metrics import accuracy, confusion_matrix, per_class_accuracy
from .trainer import Evaluation, Trainer, TrainingDiverged, TrainingInterrupted, evaluate

__all__ = ["Trainer", "TrainingInterrupted", "TrainingDiverged", "Evaluation", "evaluate",
           "TrainConfig", "RECIPES", "train", "TrainResult", "Run", "load_run",
           "load_checkpoint", "evaluate_checkpoint", "visualize_checkpoint", "load_image",
           "accuracy", "confusion_matrix", "per_class_accuracy", "metrics", "plots"]
