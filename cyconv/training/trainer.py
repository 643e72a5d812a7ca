"""The training loop: epochs of mini-batches, validation, checkpoints, early stopping, Ctrl-C.

::

    trainer = Trainer(model, optimizer, (train_images, train_labels), (val_images, val_labels),
                      epochs=20, batch_size=32, train_transform=augment_and_normalize,
                      eval_transform=normalize, scheduler=scheduler, out_dir="runs/x")
    history = trainer.fit()

One epoch:

1. The training images are visited in a new random order (``cyconv.random.generator()``,
   so ``cyconv.manual_seed`` fixes it), ``batch_size`` at a time: augment and normalise the
   batch (``train_transform``), forward, cross-entropy loss, backward, optimizer step. A
   progress bar (tqdm) shows the running loss and accuracy of the epoch.
2. The model, in evaluation mode, is scored on the validation images.
3. The learning-rate ``scheduler`` (if any) steps; one line sums the epoch up.
4. With ``out_dir``: ``last.npz`` is written every epoch, ``best.npz`` whenever the
   validation loss is the lowest so far, and ``metrics.csv`` / ``metrics.json`` are updated.
5. Early stopping (``early_stopping=P``): training stops once the validation loss has not
   improved for ``P`` epochs in a row.

Checkpoints hold everything needed to continue exactly where training stopped: the model
and optimizer state, the scheduler, the history, the best model so far, the state of the
random generator, and, when training stopped in the middle of an epoch, the epoch's order
of images, the number of batches done and the running sums. :meth:`Trainer.load_checkpoint`
restores all of it, so that a run stopped and resumed ends with exactly the same weights as
a run that was never stopped (with one kernel thread: with several, the im2col
weight-gradient kernel sums per-thread partial results whose grouping varies from run to
run, so any two runs, resumed or not, agree only up to rounding).

Ctrl-C: during :meth:`Trainer.fit` the first Ctrl-C (SIGINT) only asks the loop to stop at
the end of the current batch (a half-done optimizer step would leave the weights
inconsistent); the state is saved as ``last.npz`` (status ``"interrupted"``) and
:class:`TrainingInterrupted`, a ``KeyboardInterrupt``, is raised. A second Ctrl-C stops at
once and saves the weights as they are. A ``KeyboardInterrupt`` raised by other code during
training (e.g. a callback) is handled the same way.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .. import functional as F
from .. import random as _random
from ..autograd import no_grad
from ..data import DataLoader, Subset, TensorDataset
from ..serialization import save
from . import metrics as M
from .config import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

__all__ = ["Trainer", "TrainingInterrupted", "TrainingDiverged", "Evaluation", "evaluate",
           "HISTORY_KEYS", "format_epoch"]

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s")


_NOT_INSTALLED = object()       # _install_sigint: no handler was installed


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C; ``checkpoint`` is where its state was saved (or None)."""

    def __init__(self, checkpoint, epoch: int, batch: int | None, batches: int):
        self.checkpoint, self.epoch, self.batch, self.batches = checkpoint, epoch, batch, batches
        if batch is None:
            where = f"after epoch {epoch}"
        elif batch == batches:
            where = f"in epoch {epoch + 1}, after its {batches} batches, before validation"
        else:
            where = f"in epoch {epoch + 1}, after batch {batch}/{batches}"
        saved = f"; state saved to {checkpoint}" if checkpoint else ""
        super().__init__(f"training interrupted {where}{saved}")


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


@dataclass
class Evaluation:
    """A model's scores on a set of images (see :func:`evaluate`)."""

    loss: float
    accuracy: float
    targets: np.ndarray
    predictions: np.ndarray
    confusion: np.ndarray
    per_class: np.ndarray = field(init=False)

    def __post_init__(self):
        self.per_class = M.per_class_accuracy(self.confusion)

    def as_dict(self, class_names=None) -> dict:
        names = [str(n) for n in class_names] if class_names is not None else \
            [str(i) for i in range(len(self.per_class))]
        return {"loss": self.loss, "accuracy": self.accuracy, "images": int(len(self.targets)),
                "per_class_accuracy": {n: _finite(a) for n, a in zip(names, self.per_class)},
                "confusion_matrix": self.confusion.tolist(), "class_names": names}


class _StopRequested(Exception):
    """Internal: validation was cut short by Ctrl-C."""


def evaluate(model, images, labels, transform=None, batch_size: int = 256,
             num_classes: int | None = None, stop=None) -> Evaluation:
    """Score ``model`` on ``images``/``labels`` in evaluation mode, without gradients.

    ``transform`` (e.g. the normalisation) is applied to each batch. The model's
    train/eval mode is put back afterwards. ``stop``: a function called between batches;
    if it returns True the evaluation is abandoned (raises an internal exception).
    """
    labels = np.asarray(labels, dtype=np.int64)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, transform=transform)
    was_training = model.training
    model.eval()
    total_loss, predictions, outputs = 0.0, [], None
    try:
        with no_grad():
            for batch, targets in loader:
                logits = model(batch)
                outputs = logits.shape[1]
                total_loss += F.cross_entropy(logits, targets).item() * len(targets)
                predictions.append(logits.data.argmax(axis=1))
                if stop is not None and stop():
                    raise _StopRequested
    finally:
        model.train(was_training)
    predictions = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    if num_classes is None:
        num_classes = outputs or int(labels.max(initial=0)) + 1
    cm = M.confusion_matrix(labels, predictions, num_classes=num_classes)
    n = max(len(labels), 1)
    return Evaluation(total_loss / n, M.accuracy(labels, predictions), labels, predictions, cm)


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def format_epoch(record: dict, epochs: int, best: bool = False) -> str:
    """The one-line summary of an epoch."""
    width = len(str(epochs))
    return (f"epoch {record['epoch']:>{width}}/{epochs}  "
            f"train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:6.2f}%  "
            f"val loss {record['val_loss']:.4f} acc {100 * record['val_acc']:6.2f}%  "
            f"lr {record['lr']:.2e}  {record['time_s']:5.1f}s{'  *best' if best else ''}")


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Trainer:
    """Train ``model`` with ``optimizer`` on ``train_data``, validating on ``val_data``.

    ``train_data``, ``val_data``: ``(images, labels)`` pairs of arrays, images ``(N, C, H, W)``
    (not yet normalised: the transforms do that), labels ``(N,)`` ints.

    Keyword arguments: ``epochs`` (the total, counting epochs done before a resume),
    ``batch_size``, ``train_transform`` (augmentation + normalisation, random),
    ``eval_transform`` (normalisation only), ``scheduler`` (stepped once per epoch),
    ``early_stopping`` (patience in epochs; 0 is off), ``out_dir`` (where checkpoints and
    metrics go; None: nowhere), ``config`` (a dict saved in the checkpoints), ``progress``
    (True, False, or None: a bar only on a terminal), ``log`` (called with each line of
    text), ``on_batch_end(trainer, epoch, batch)`` and ``on_epoch_end(trainer, record)``
    callbacks, ``eval_batch_size``, ``handle_sigint`` (turn the first Ctrl-C into a clean
    stop at the end of the batch; only possible in the main thread).

    State, saved in checkpoints: ``epoch`` (epochs completed), ``history`` (a dict of lists,
    :data:`HISTORY_KEYS`), ``best_epoch``, ``best_val_loss``, ``bad_epochs`` (epochs since
    the best), ``best_state`` (a copy of the best model's state dict), ``status``
    ('new', 'running', 'interrupted', 'finished' or 'early_stopped').
    """

    def __init__(self, model, optimizer, train_data, val_data, *, epochs: int,
                 batch_size: int = 32, train_transform=None, eval_transform=None,
                 scheduler=None, early_stopping: int = 0, out_dir=None, config: dict | None = None,
                 progress: bool | None = None, log=print, on_batch_end=None, on_epoch_end=None,
                 eval_batch_size: int = 256, handle_sigint: bool = True):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_images, self.train_labels = (np.asarray(a) for a in train_data[:2])
        self.val_images, self.val_labels = (np.asarray(a) for a in val_data[:2])
        self.train_labels = self.train_labels.astype(np.int64)
        self.val_labels = self.val_labels.astype(np.int64)
        if len(self.train_labels) == 0 or len(self.val_labels) == 0:
            raise ValueError("Trainer needs at least one training and one validation image")
        self.train_set = TensorDataset(self.train_images, self.train_labels)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.early_stopping = int(early_stopping or 0)
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.config = dict(config or {})
        self.progress, self.log = progress, log
        self.on_batch_end, self.on_epoch_end = on_batch_end, on_epoch_end
        self.eval_batch_size, self.handle_sigint = int(eval_batch_size), handle_sigint
        self.num_classes = len(self.config.get("class_names", ())) or None

        self.epoch = 0
        self.history = {key: [] for key in HISTORY_KEYS}
        self.best_epoch: int | None = None
        self.best_val_loss: float | None = None
        self.bad_epochs = 0
        self.best_state: dict | None = None
        self.status = "new"
        self.position: dict | None = None      # the unfinished epoch, if any
        self._stop_requested = False

    # --- properties ---------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_labels) / self.batch_size)

    @property
    def patience_exhausted(self) -> bool:
        return self.early_stopping > 0 and self.bad_epochs >= self.early_stopping

    def path(self, name: str) -> str | None:
        return None if self.out_dir is None else os.path.join(self.out_dir, name)

    # --- the loop -------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until ``epochs`` are done or early stopping; returns the history.

        Raises :class:`TrainingInterrupted` on Ctrl-C (after saving ``last.npz``) and
        :class:`TrainingDiverged` if the loss becomes NaN or infinite.
        """
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
        self._stop_requested = False
        previous_handler = self._install_sigint()
        try:
            while self.epoch < self.epochs and not self.patience_exhausted:
                self.status = "running"
                self._run_epoch()
        except KeyboardInterrupt:
            self.status = "interrupted"
            saved = self.save_checkpoint("last.npz") if self.out_dir is not None else None
            batch = None if self.position is None else int(self.position["batch"])
            raise TrainingInterrupted(saved, self.epoch, batch, self.batches_per_epoch) from None
        finally:
            if previous_handler is not _NOT_INSTALLED:
                signal.signal(signal.SIGINT, previous_handler)
        self.status = "early_stopped" if self.patience_exhausted and self.epoch < self.epochs \
            else "finished"
        if self.status == "early_stopped":
            self.log(f"early stopping: the validation loss has not improved for "
                     f"{self.bad_epochs} epochs (best: epoch {self.best_epoch})")
        if self.out_dir is not None:
            self.save_checkpoint("last.npz")
            self.write_metrics()
        return self.history

    def _install_sigint(self):
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            return _NOT_INSTALLED

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            # os.write, not print: the handler may run while the main code is in the middle
            # of writing to sys.stderr (the progress bar), and a buffered stream refuses a
            # reentrant write
            message = ("\nCtrl-C: stopping at the end of this batch (press Ctrl-C again to "
                       "stop at once)\n")
            try:
                os.write(sys.stderr.fileno(), message.encode())
            except (AttributeError, OSError, ValueError):
                pass

        try:
            previous = signal.signal(signal.SIGINT, request_stop)
        except (ValueError, OSError):   # pragma: no cover - not the main interpreter
            return _NOT_INSTALLED
        # None: a handler not installed from Python; the default is the best stand-in
        return signal.default_int_handler if previous is None else previous

    def _check_stop(self):
        if self._stop_requested:
            raise KeyboardInterrupt

    def _progress_bar(self, initial: int):
        if self.progress is False:
            return None
        try:
            from tqdm import tqdm
        except ImportError:             # pragma: no cover - tqdm is a dependency
            return None
        width = len(str(self.epochs))
        return tqdm(total=self.batches_per_epoch, initial=initial, leave=False, unit="batch",
                    desc=f"epoch {self.epoch + 1:>{width}}/{self.epochs}",
                    disable=None if self.progress is None else False, dynamic_ncols=True)

    def _run_epoch(self) -> None:
        if self.position is None:       # a fresh epoch: draw its order of images
            self.position = {"order": _random.generator().permutation(len(self.train_labels)),
                             "batch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0,
                             "elapsed": 0.0}
        pos = self.position
        start = time.perf_counter()
        elapsed_before = pos["elapsed"]
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.model.train()
        first = pos["batch"] * self.batch_size
        remaining = Subset(self.train_set, pos["order"][first:])
        loader = DataLoader(remaining, batch_size=self.batch_size, transform=self.train_transform)
        bar = self._progress_bar(pos["batch"])
        try:
            for images, labels in loader:
                self.optimizer.zero_grad()
                logits = self.model(images)
                loss = F.cross_entropy(logits, labels)
                loss.backward()
                self.optimizer.step()
                value = loss.item()
                right = int((logits.data.argmax(axis=1) == labels).sum())
                # one update of the bookkeeping, so that it always matches the weights
                pos.update(batch=pos["batch"] + 1, loss_sum=pos["loss_sum"] + value * len(labels),
                           correct=pos["correct"] + right, seen=pos["seen"] + len(labels),
                           elapsed=elapsed_before + time.perf_counter() - start)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({"loss": f"{pos['loss_sum'] / pos['seen']:.4f}",
                                     "acc": f"{100 * pos['correct'] / pos['seen']:.2f}%"},
                                    refresh=False)
                if self.on_batch_end is not None:
                    self.on_batch_end(self, self.epoch + 1, pos["batch"])
                self._check_stop()
            try:
                val = evaluate(self.model, self.val_images, self.val_labels, self.eval_transform,
                               self.eval_batch_size, self.num_classes,
                               stop=lambda: self._stop_requested)
            except _StopRequested:
                raise KeyboardInterrupt from None
        finally:
            if bar is not None:
                bar.close()
            pos["elapsed"] = elapsed_before + time.perf_counter() - start

        train_loss = pos["loss_sum"] / max(pos["seen"], 1)
        if not math.isfinite(train_loss) or not math.isfinite(val.loss):
            self.status = "diverged"
            raise TrainingDiverged(
                f"the loss became {train_loss if not math.isfinite(train_loss) else val.loss} "
                f"in epoch {self.epoch + 1} (learning rate {lr:g}): the training diverged; "
                f"try a smaller --lr")
        record = {"epoch": self.epoch + 1, "train_loss": train_loss,
                  "train_acc": pos["correct"] / max(pos["seen"], 1), "val_loss": val.loss,
                  "val_acc": val.accuracy, "lr": lr, "time_s": pos["elapsed"]}
        improved = self.best_val_loss is None or val.loss < self.best_val_loss
        best_state = ({k: np.array(v, copy=True) for k, v in self.model.state_dict().items()}
                      if improved else self.best_state)

        # commit the epoch: all of its state changes together
        if self.scheduler is not None:
            self.scheduler.step()
        for key in HISTORY_KEYS:
            self.history[key].append(record[key])
        self.epoch += 1
        self.position = None
        if improved:
            self.best_epoch, self.best_val_loss, self.best_state = self.epoch, val.loss, best_state
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

        if self.out_dir is not None:
            if improved:
                self.save_checkpoint("best.npz")
            self.save_checkpoint("last.npz")
            self.write_metrics()
        self.log(format_epoch(record, self.epochs, best=improved))
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, record)
        self._check_stop()

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Everything needed to continue training (see the module docstring)."""
        position = None
        if self.position is not None:
            position = {k: (np.asarray(v, dtype=np.int64) if k == "order" else v)
                        for k, v in self.position.items()}
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "status": self.status,
            "config": self.config,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "history": {k: list(v) for k, v in self.history.items()},
            "best": {"epoch": self.best_epoch, "val_loss": self.best_val_loss,
                     "bad_epochs": self.bad_epochs, "model": self.best_state},
            "position": position,
            "rng": json.dumps(_random.generator().bit_generator.state),
        }

    def save_checkpoint(self, name: str) -> str:
        """Write :meth:`checkpoint` to ``out_dir/name`` (atomically); returns the path."""
        if self.out_dir is None:
            raise ValueError("this Trainer has no out_dir to save checkpoints in")
        path = self.path(name)
        save(self.checkpoint(), path)
        return path

    def load_checkpoint(self, checkpoint: dict) -> None:
        """Continue from a :meth:`checkpoint` (e.g. ``cyconv.load('runs/x/last.npz')``).

        Restores the model, the optimizer, the scheduler, the history, the best model, the
        random generator and the unfinished epoch.
        """
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ValueError(f"the checkpoint's weights do not fit the model: {error}") from None
        if checkpoint.get("optimizer") is None:
            raise ValueError("the checkpoint holds no optimizer state to continue from")
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        saved_scheduler = checkpoint.get("scheduler")
        if (saved_scheduler is None) != (self.scheduler is None):
            raise ValueError("the checkpoint was made " + ("without" if saved_scheduler is None
                             else "with") + " a learning-rate scheduler, this trainer "
                             + ("has one" if saved_scheduler is None else "has none"))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved_scheduler)
        self.epoch = int(checkpoint["epoch"])
        history = checkpoint.get("history") or {}
        self.history = {key: [float(v) if key != "epoch" else int(v)
                              for v in history.get(key, [])] for key in HISTORY_KEYS}
        best = checkpoint.get("best") or {}
        self.best_epoch = best.get("epoch")
        self.best_val_loss = best.get("val_loss")
        self.bad_epochs = int(best.get("bad_epochs") or 0)
        self.best_state = best.get("model")
        self.status = checkpoint.get("status", "interrupted")
        position = checkpoint.get("position")
        if position is not None:
            order = np.asarray(position["order"], dtype=np.int64)
            if order.shape != (len(self.train_labels),):
                raise ValueError(f"the checkpoint stopped in the middle of an epoch over "
                                 f"{order.size} training images, but there are now "
                                 f"{len(self.train_labels)}: resume with the same data")
            position = dict(position, order=order, batch=int(position["batch"]),
                            seen=int(position["seen"]), correct=int(position["correct"]),
                            loss_sum=float(position["loss_sum"]),
                            elapsed=float(position["elapsed"]))
        self.position = position
        if checkpoint.get("rng"):
            _random.generator().bit_generator.state = json.loads(checkpoint["rng"])

    # --- metrics files --------------------------------------------------------------------
    def history_rows(self) -> list[dict]:
        return [dict(zip(HISTORY_KEYS, values)) for values in zip(*self.history.values())]

    def write_metrics(self, test: dict | None = None, extra: dict | None = None) -> tuple[str, str]:
        """Write ``metrics.csv`` (one row per epoch) and ``metrics.json`` (the same, the
        best epoch, the status, the run's config and, if given, the ``test`` results)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HISTORY_KEYS)
        for row in self.history_rows():
            writer.writerow([row["epoch"]] + [f"{row[k]:.6g}" for k in HISTORY_KEYS[1:]])
        csv_path, json_path = self.path("metrics.csv"), self.path("metrics.json")
        _write_atomic(csv_path, buffer.getvalue())
        summary = {"status": self.status, "epochs_done": self.epoch, "epochs": self.epochs,
                   "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                   "history": self.history_rows(), "config": self.config}
        if extra:
            summary.update(extra)
        if test is not None:
            summary["test"] = test
        _write_atomic(json_path, json.dumps(_jsonable(summary), indent=2) + "\n")
        return csv_path, json_path


def _jsonable(value):
    """Plain JSON: NumPy values to Python ones, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    return value
