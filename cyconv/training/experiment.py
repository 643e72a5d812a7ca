"""Whole runs, as the command line does them: train, evaluate a checkpoint, visualise a network.

- :func:`train`: a :class:`~cyconv.training.config.TrainConfig` in, a trained model, its
  checkpoints, metrics and plots out (or continue a run from its checkpoint).
- :func:`load_run`: rebuild the model, the normalisation and the dataset of a checkpoint.
- :func:`evaluate_checkpoint`: score a checkpoint on a split of its dataset.
- :func:`visualize_checkpoint`: pictures of the first layer's filters and of the feature
  maps of every convolution for one image.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from .. import kernels, nn
from ..autograd import Tensor, no_grad
from ..data import get_dataset, transforms
from ..models import get_model
from ..random import manual_seed
from ..serialization import load
from . import plots
from .config import (RESUME_CHANGEABLE, TrainConfig, _display_kind, augmentation, build_model,
                     build_optimizer, build_scheduler, check_checkpoint, dataset_kind, load_data,
                     run_config)
from .images import load_image
from .trainer import Evaluation, Trainer, evaluate

__all__ = ["train", "TrainResult", "Run", "load_run", "load_checkpoint", "evaluate_checkpoint",
           "visualize_checkpoint", "default_out_dir", "RUN_FILES"]

RUN_FILES = ("best.npz", "last.npz")


@dataclass
class TrainResult:
    """What :func:`train` did: the run's directory, history, test scores and files."""

    out_dir: str
    status: str
    epochs_done: int
    best_epoch: int | None
    history: dict
    test: Evaluation
    class_names: tuple
    train_time: float
    paths: dict


def default_out_dir(config: TrainConfig, root: str = "runs") -> str:
    """``runs/<dataset>-<model>-<date>-<time>`` (with a suffix if it exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kind = _display_kind(dataset_kind(config.dataset))
    base = os.path.join(root, f"{kind}-{config.model}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def _checkpoint_path(path) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        candidate = os.path.join(path, "last.npz")
        if not os.path.exists(candidate):
            raise FileNotFoundError(f"{path} is a directory without a last.npz checkpoint")
        return candidate
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path) -> tuple[str, dict]:
    """``(path, checkpoint)``: read a training checkpoint (a run directory means its last.npz)."""
    path = _checkpoint_path(path)
    return path, check_checkpoint(load(path), path)


def _check_out_dir(out_dir: str, resuming_from: str | None) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"--out {out_dir} exists and is not a directory")
    taken = [name for name in RUN_FILES if os.path.exists(os.path.join(out_dir, name))]
    same = resuming_from is not None and \
        os.path.abspath(os.path.dirname(resuming_from)) == os.path.abspath(out_dir)
    if taken and not same:
        raise FileExistsError(f"{out_dir} already holds a training run ({', '.join(taken)}); "
                              f"choose another --out, or continue that run with "
                              f"--resume {os.path.join(out_dir, 'last.npz')}")


def _resumed_config(checkpoint: dict, changes: dict) -> TrainConfig:
    saved = checkpoint["config"]
    config = TrainConfig.from_dict(saved)
    for name, value in changes.items():
        if value is None:
            continue
        if name == "model" and isinstance(value, str):
            value = value.lower().replace("-", "_")
        current = getattr(config, name)
        if name not in RESUME_CHANGEABLE:
            if value != current:
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{option} cannot change when resuming: the run used "
                                 f"{current!r}, got {value!r} (only --epochs, "
                                 f"--early-stopping and the directory of --dataset can)")
            continue
        if name == "dataset" and dataset_kind(value) != dataset_kind(current):
            raise ValueError(f"the run was trained on {current!r}; --dataset may only point "
                             f"to another copy of the same dataset, got {value!r}")
        setattr(config, name, value)
    return config.validate()


def train(config: TrainConfig | None = None, *, resume=None, changes: dict | None = None,
          out_dir=None, threads: int | None = None, progress: bool | None = None, log=print,
          on_batch_end=None, on_epoch_end=None) -> TrainResult:
    """Train a model as ``cyconv train`` does; see the module docstring of the package.

    A new run: ``config`` (default: the digits recipe). Continuing one: ``resume`` (a
    checkpoint, or a run directory meaning its last.npz) and ``changes`` (the options given
    again; only ``epochs``, ``early_stopping`` and ``dataset``'s directory may differ).
    ``out_dir``: default ``runs/<dataset>-<model>-<time>`` for a new run, the checkpoint's
    directory when resuming. ``threads``: the kernels' thread count during the run (put
    back afterwards); when resuming without it, the run's saved thread count is used, since
    another number of threads adds the same numbers up in another order. (With one thread
    a resumed run ends bit for bit where an uninterrupted one does; with several, the
    weight-gradient kernel's per-thread partial sums make runs differ by rounding.)
    Raises :class:`~cyconv.training.TrainingInterrupted` on Ctrl-C.
    """
    before = kernels.get_num_threads()
    try:
        return _train(config, resume, changes, out_dir, threads, progress, log, on_batch_end,
                      on_epoch_end)
    finally:
        if kernels.get_num_threads() != before:
            kernels.set_num_threads(before)


def _train(config, resume, changes, out_dir, threads, progress, log, on_batch_end,
           on_epoch_end) -> TrainResult:
    checkpoint, resume_path = None, None
    if resume is not None:
        resume_path, checkpoint = load_checkpoint(resume)
        config = _resumed_config(checkpoint, changes or {})
        done = int(checkpoint["epoch"])
        if done >= config.epochs and checkpoint.get("position") is None:
            raise ValueError(f"{resume_path} has already done {done} of {config.epochs} "
                             f"epochs: nothing to resume (give a larger --epochs to train on)")
        patience = config.early_stopping
        if checkpoint.get("status") == "early_stopped" and patience and \
                int(checkpoint["best"].get("bad_epochs") or 0) >= patience:
            raise ValueError(f"{resume_path} stopped early (no better validation loss for "
                             f"{patience} epochs); resume with a larger --early-stopping "
                             f"patience, or 0 to turn it off")
        if threads is None:
            threads = checkpoint["config"].get("threads")
    else:
        config = (config if config is not None else TrainConfig()).validate()
    if threads is not None:
        kernels.set_num_threads(int(threads))

    data = load_data(config)
    config = config.resolve(data.input_shape)
    if checkpoint is not None:
        saved = checkpoint["config"]
        data.mean = np.asarray(saved["normalize_mean"], dtype=np.float64)
        data.std = np.asarray(saved["normalize_std"], dtype=np.float64)
        model_kwargs = dict(saved["model_kwargs"])
        if list(data.input_shape) != list(saved["input_shape"]):
            raise ValueError(f"the dataset's images are {data.input_shape}, the run was "
                             f"trained on {tuple(saved['input_shape'])}")
    manual_seed(config.seed)
    if checkpoint is not None:
        model = get_model(config.model, **model_kwargs)
    else:
        model, model_kwargs = build_model(config.model, data.input_shape, len(data.class_names))
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config, optimizer)
    run_cfg = run_config(config, data, model_kwargs)
    run_cfg["threads"] = kernels.get_num_threads()

    if out_dir is None:
        out_dir = os.path.dirname(resume_path) if resume_path else default_out_dir(config)
    out_dir = os.fspath(out_dir)
    _check_out_dir(out_dir, resume_path)
    os.makedirs(out_dir, exist_ok=True)

    normalize = data.normalize
    train_transform = (transforms.Compose([augmentation(dataset_kind(config.dataset)), normalize])
                       if config.augment else normalize)
    trainer = Trainer(model, optimizer, (data.train_images, data.train_labels),
                      (data.val_images, data.val_labels), epochs=config.epochs,
                      batch_size=config.batch_size, train_transform=train_transform,
                      eval_transform=normalize, scheduler=scheduler,
                      early_stopping=config.early_stopping, out_dir=out_dir, config=run_cfg,
                      progress=progress, log=log, on_batch_end=on_batch_end,
                      on_epoch_end=on_epoch_end)
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
        source_best = os.path.join(os.path.dirname(resume_path), "best.npz")
        target_best = os.path.join(out_dir, "best.npz")
        if os.path.exists(source_best) and not os.path.exists(target_best):
            shutil.copy2(source_best, target_best)
        log(f"resuming {resume_path}: {trainer.epoch} of {config.epochs} epochs done"
            + (f", epoch {trainer.epoch + 1} stopped after batch {trainer.position['batch']}"
               if trainer.position else "") + f" ({kernels.get_num_threads()} threads)")
    else:
        log(_describe(config, data, out_dir))
    trainer.fit()

    # the test images are scored by the model of the best epoch (lowest validation loss)
    test_split = get_dataset(config.dataset, "test", val_fraction=config.val_fraction)
    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    test = evaluate(model, test_split.images, test_split.labels, normalize,
                    num_classes=len(data.class_names))
    train_time = float(sum(trainer.history["time_s"]))
    test_info = dict(test.as_dict(data.class_names), weights="best.npz", epoch=trainer.best_epoch)
    csv_path, json_path = trainer.write_metrics(test=test_info,
                                                extra={"train_time_s": train_time})
    paths = {"best": os.path.join(out_dir, "best.npz"), "last": os.path.join(out_dir, "last.npz"),
             "metrics_csv": csv_path, "metrics_json": json_path}
    best_epoch = trainer.best_epoch
    paths["loss_plot"] = plots.plot_curves(trainer.history, os.path.join(out_dir, "loss.png"),
                                           "loss", best_epoch)
    paths["accuracy_plot"] = plots.plot_curves(trainer.history,
                                               os.path.join(out_dir, "accuracy.png"),
                                               "accuracy", best_epoch)
    paths["confusion_plot"] = plots.plot_confusion_matrix(
        test.confusion, data.class_names, os.path.join(out_dir, "confusion_matrix.png"),
        title=f"Test confusion matrix, accuracy {100 * test.accuracy:.2f}% "
              f"(best epoch {best_epoch})")
    return TrainResult(out_dir, trainer.status, trainer.epoch, best_epoch, trainer.history,
                       test, tuple(data.class_names), train_time, paths)


def _describe(config: TrainConfig, data, out_dir: str) -> str:
    optimizer = f"{config.optimizer} lr {config.lr:g}"
    if config.optimizer == "sgd":
        optimizer += f" momentum {config.momentum:g}"
    if config.weight_decay:
        optimizer += f" weight decay {config.weight_decay:g}"
    extras = [f"{config.scheduler} schedule" if config.scheduler != "none" else "constant lr",
              "augmented" if config.augment else "no augmentation"]
    if config.early_stopping:
        extras.append(f"early stopping after {config.early_stopping} epochs without progress")
    return (f"training {config.model} on {config.dataset}: {len(data.train_labels)} training / "
            f"{len(data.val_labels)} validation images {tuple(data.input_shape)}, "
            f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} of batches of "
            f"{config.batch_size}, {optimizer}, "
            f"{', '.join(extras)}, seed {config.seed}\nwriting to {out_dir}")


@dataclass
class Run:
    """A checkpoint brought back to life: the model (evaluation mode) and how to feed it."""

    path: str
    checkpoint: dict
    config: dict
    model: nn.Module
    normalize: transforms.Normalize
    class_names: tuple
    input_shape: tuple
    dataset: str

    def split(self, name: str = "test"):
        """The images and labels of a split of the run's dataset (not normalised)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        part = get_dataset(self.dataset, name, val_fraction=self.config.get("val_fraction", 0.1))
        if tuple(part.input_shape) != self.input_shape:
            raise ValueError(f"the images of {self.dataset!r} are {tuple(part.input_shape)}, "
                             f"the model was trained on {self.input_shape}")
        return part.images, part.labels


def load_run(path, dataset: str | None = None) -> Run:
    """Rebuild the model of checkpoint ``path`` with its weights; ``dataset`` overrides the
    dataset spec saved in it (e.g. the MNIST files moved to another directory)."""
    path, checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    try:
        model = get_model(config["model"], **config["model_kwargs"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot rebuild its model {config.get('model')!r}: "
                         f"{error}") from None
    model.eval()
    spec = config["dataset"]
    if dataset is not None:
        if dataset_kind(dataset) != dataset_kind(spec):
            raise ValueError(f"the model was trained on {spec!r}; --dataset may only point to "
                             f"another copy of the same dataset, got {dataset!r}")
        spec = dataset
    normalize = transforms.Normalize(config["normalize_mean"], config["normalize_std"])
    return Run(path, checkpoint, config, model, normalize, tuple(config["class_names"]),
               tuple(int(v) for v in config["input_shape"]), spec)


def evaluate_checkpoint(path, split: str = "test", dataset: str | None = None,
                        batch_size: int = 256) -> tuple[Run, Evaluation]:
    """Score the checkpoint's model on ``split`` of its dataset: ``(run, evaluation)``."""
    run = load_run(path, dataset)
    images, labels = run.split(split)
    return run, evaluate(run.model, images, labels, run.normalize, batch_size,
                         num_classes=len(run.class_names))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "layer"


def visualize_checkpoint(path, image=None, index: int | None = None, split: str = "test",
                         dataset: str | None = None, out_dir=None, invert: bool = False) -> dict:
    """Draw the first convolution's filters and every convolution's feature maps.

    The input is the image file ``image`` (see :mod:`cyconv.training.images`) or image
    ``index`` (default 0) of ``split`` of the checkpoint's dataset. Written to ``out_dir``
    (default: ``visualize/`` next to the checkpoint): ``input.png``, ``filters.png`` and
    ``feature_maps_<k>_<layer>.png``. Returns the paths, the label (if known), the
    predicted class and its probability.
    """
    run = load_run(path, dataset)
    if image is not None and index is not None:
        raise ValueError("give either an image file or an index, not both")
    if image is not None:
        picture = load_image(image, run.input_shape, invert=invert)
        label, source = None, os.fspath(image)
    else:
        images, labels = run.split(split)
        index = 0 if index is None else int(index)
        if not 0 <= index < len(labels):
            raise ValueError(f"--index must be in 0..{len(labels) - 1} (the {split} split has "
                             f"{len(labels)} images), got {index}")
        picture, label = images[index], int(labels[index])
        if invert:
            picture = 1.0 - picture
        source = f"{split} image {index}"
    convolutions = [(name, module) for name, module in run.model.named_modules()
                    if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"the model {run.config['model']!r} has no convolution layers")

    captured = {}
    handles = [module.register_forward_hook(
        lambda module, inputs, output, name=name: captured.__setitem__(name, output.data[0].copy()))
        for name, module in convolutions]
    try:
        with no_grad():
            logits = run.model(Tensor(run.normalize(picture[None].astype(np.float32))))
    finally:
        for handle in handles:
            handle.remove()
    probabilities = F.softmax(logits, 1).data[0]
    predicted = int(probabilities.argmax())

    out_dir = os.fspath(out_dir) if out_dir is not None else \
        os.path.join(os.path.dirname(run.path), "visualize")
    os.makedirs(out_dir, exist_ok=True)
    names = run.class_names
    verdict = f"predicted {names[predicted]} ({100 * probabilities[predicted]:.1f}%)"
    if label is not None:
        verdict = f"label {names[label]}, {verdict}"
    paths = [plots.plot_image(picture, os.path.join(out_dir, "input.png"),
                              f"{source}\n{verdict}")]
    first_name, first = convolutions[0]
    paths.append(plots.plot_filters(
        first.weight.data, os.path.join(out_dir, "filters.png"),
        f"Filters of the first convolution ({first_name}): {tuple(first.weight.shape)}"))
    for k, (name, module) in enumerate(convolutions, start=1):
        maps = captured[name]
        paths.append(plots.plot_feature_maps(
            maps, os.path.join(out_dir, f"feature_maps_{k:02d}_{_safe(name)}.png"),
            f"Feature maps of {name} ({module.out_channels} x {maps.shape[1]}x{maps.shape[2]})"))
    return {"paths": paths, "label": label, "predicted": predicted,
            "probability": float(probabilities[predicted]), "source": source,
            "class_names": names, "out_dir": out_dir}
