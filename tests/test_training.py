"""cyconv.training: metrics, the training loop (checkpoints, resume, early stopping, Ctrl-C),
plots and image loading. Everything on tiny settings: a few hundred digits, 1-3 epochs."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import cyconv
from cyconv.data import get_dataset, transforms
from cyconv.models import get_model
from cyconv.training import (Evaluation, Trainer, TrainConfig, TrainingInterrupted, evaluate,
                             load_image, metrics, plots, train)
from cyconv.training import trainer as trainer_module
from cyconv.training.config import CHECKPOINT_FORMAT, check_checkpoint
from cyconv.training.images import resample_axis, to_input_shape

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quiet(*args, **kwargs):
    pass


def assert_png(path):
    assert os.path.isfile(path), path
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE, path
    import matplotlib.image as mpimg
    picture = mpimg.imread(path)
    assert picture.ndim == 3 and min(picture.shape[:2]) > 50, picture.shape


# --- metrics ---------------------------------------------------------------------------------

def test_confusion_matrix_and_per_class_accuracy_by_hand():
    targets = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 1, 2, 0, 2, 1]
    cm = metrics.confusion_matrix(targets, predicted, num_classes=4)
    assert cm.tolist() == [[2, 1, 0, 0],
                           [0, 2, 0, 0],
                           [1, 1, 2, 0],
                           [0, 0, 0, 0]]
    per_class = metrics.per_class_accuracy(cm)
    assert per_class[:3].tolist() == pytest.approx([2 / 3, 1.0, 0.5])
    assert np.isnan(per_class[3])                 # no example of class 3
    assert metrics.accuracy(targets, predicted) == pytest.approx(6 / 9)
    # scores (logits) are turned into their arg-max
    scores = np.eye(3)[predicted] * 5.0 - 1.0
    assert metrics.accuracy(targets, scores) == pytest.approx(6 / 9)
    assert np.array_equal(metrics.confusion_matrix(targets, scores), cm[:3, :3])


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="0..1"):
        metrics.confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(TypeError, match="integers"):
        metrics.confusion_matrix([0.5], [0])


def test_text_tables_name_the_classes():
    cm = np.array([[3, 1], [0, 4]])
    table = metrics.format_confusion_matrix(cm, ["cat", "dog"])
    lines = table.splitlines()
    assert lines[0].split()[-2:] == ["0", "1"]
    assert lines[1].split() == ["0", "cat", "3", "1"]
    assert lines[2].split() == ["1", "dog", "0", "4"]
    per_class = metrics.format_per_class_accuracy(cm, ["cat", "dog"])
    assert "cat" in per_class and "75.00%" in per_class and "100.00%" in per_class


# --- the trainer -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_digits():
    train_split = get_dataset("digits", "train")
    val_split = get_dataset("digits", "val")
    mean, std = transforms.channel_mean_std(train_split.images)
    return ((train_split.images[:160], train_split.labels[:160]),
            (val_split.images[:80], val_split.labels[:80]), transforms.Normalize(mean, std))


def make_trainer(data, out_dir, epochs=2, scheduler=True, **kwargs):
    """A fresh, seeded trainer (the same seed gives the same initial weights)."""
    train_data, val_data, normalize = data
    cyconv.manual_seed(0)
    model = get_model("digits_net")
    optimizer = cyconv.optim.Adam(model.parameters(), lr=3e-3)
    sched = cyconv.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3) if scheduler else None
    augment = transforms.Compose([transforms.RandomShift(1), normalize])
    kwargs.setdefault("log", quiet)
    return Trainer(model, optimizer, train_data, val_data, epochs=epochs, batch_size=32,
                   train_transform=augment, eval_transform=normalize, scheduler=sched,
                   out_dir=out_dir, config={"class_names": [str(i) for i in range(10)]},
                   progress=False, **kwargs)


def weights(state):
    return {k: np.asarray(v) for k, v in state.items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_trainer_history_checkpoints_best_and_last(tiny_digits, tmp_path):
    lines = []
    trainer = make_trainer(tiny_digits, tmp_path, epochs=3, log=lines.append)
    history = trainer.fit()
    assert set(history) == set(trainer_module.HISTORY_KEYS)
    assert history["epoch"] == [1, 2, 3]
    assert all(len(values) == 3 for values in history.values())
    assert all(0.0 <= a <= 1.0 for a in history["train_acc"] + history["val_acc"])
    assert history["lr"][0] == pytest.approx(3e-3)     # cosine: lr falls epoch by epoch
    assert history["lr"][0] > history["lr"][1] > history["lr"][2]
    assert len([line for line in lines if line.startswith("epoch ")]) == 3
    assert trainer.status == "finished"

    last, best = cyconv.load(tmp_path / "last.npz"), cyconv.load(tmp_path / "best.npz")
    assert last["format"] == best["format"] == CHECKPOINT_FORMAT
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    assert trainer.best_epoch == best_epoch == best["epoch"] == last["best"]["epoch"]
    assert last["epoch"] == 3 and last["status"] == "finished" and last["position"] is None
    assert last["history"]["val_loss"] == pytest.approx(history["val_loss"])
    assert same_weights(weights(last["model"]), weights(trainer.model.state_dict()))
    assert same_weights(weights(best["model"]), weights(trainer.best_state))
    assert same_weights(weights(last["best"]["model"]), weights(best["model"]))
    assert set(last["optimizer"]) == {"state", "param_groups"}
    assert last["scheduler"]["last_epoch"] == 3

    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == ",".join(trainer_module.HISTORY_KEYS) and len(rows) == 4
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["best_epoch"] == best_epoch and len(summary["history"]) == 3


def test_early_stopping_on_validation_loss(tiny_digits, tmp_path, monkeypatch):
    losses = iter([1.0, 0.9, 0.95, 0.91, 0.5, 0.4])   # best at epoch 2, then 2 worse epochs

    def fake_evaluate(model, images, labels, *args, **kwargs):
        labels = np.asarray(labels)
        return Evaluation(next(losses), 0.5, labels, labels, np.eye(10, dtype=np.int64))

    monkeypatch.setattr(trainer_module, "evaluate", fake_evaluate)
    lines = []
    trainer = make_trainer(tiny_digits, tmp_path, epochs=6, early_stopping=2, log=lines.append)
    history = trainer.fit()
    assert history["epoch"] == [1, 2, 3, 4]
    assert trainer.status == "early_stopped"
    assert trainer.best_epoch == 2 and trainer.bad_epochs == 2
    assert cyconv.load(tmp_path / "best.npz")["epoch"] == 2
    assert cyconv.load(tmp_path / "last.npz")["status"] == "early_stopped"
    assert any("early stopping" in line for line in lines)


# Bit-for-bit equality needs one thread: with several, the im2col weight-gradient kernel adds
# per-thread partial sums whose grouping depends on which thread took which block.

def test_resume_after_an_epoch_gives_the_same_weights(tiny_digits, tmp_path, restore_threads):
    cyconv.set_num_threads(1)
    straight = make_trainer(tiny_digits, tmp_path / "straight", epochs=2)
    straight.fit()

    first = make_trainer(tiny_digits, tmp_path / "split", epochs=1)
    first.fit()
    second = make_trainer(tiny_digits, tmp_path / "split", epochs=2)
    second.load_checkpoint(cyconv.load(tmp_path / "split" / "last.npz"))
    assert second.epoch == 1
    second.fit()
    assert second.history["val_loss"] == pytest.approx(straight.history["val_loss"], rel=0, abs=0)
    assert same_weights(weights(second.model.state_dict()), weights(straight.model.state_dict()))


def test_keyboard_interrupt_mid_epoch_saves_and_resumes_exactly(tiny_digits, tmp_path,
                                                                restore_threads):
    cyconv.set_num_threads(1)
    straight = make_trainer(tiny_digits, tmp_path / "straight", epochs=2)
    straight.fit()

    def interrupt(trainer, epoch, batch):
        if (epoch, batch) == (2, 3):
            raise KeyboardInterrupt

    stopped = make_trainer(tiny_digits, tmp_path / "stopped", epochs=2, on_batch_end=interrupt)
    with pytest.raises(TrainingInterrupted) as caught:
        stopped.fit()
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.checkpoint == str(tmp_path / "stopped" / "last.npz")
    assert "in epoch 2, after batch 3/5" in str(caught.value)
    saved = cyconv.load(tmp_path / "stopped" / "last.npz")
    assert saved["status"] == "interrupted" and saved["epoch"] == 1
    assert saved["position"]["batch"] == 3 and saved["position"]["seen"] == 96

    resumed = make_trainer(tiny_digits, tmp_path / "stopped", epochs=2)
    resumed.load_checkpoint(saved)
    resumed.fit()
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    assert same_weights(weights(resumed.model.state_dict()), weights(straight.model.state_dict()))


def test_ctrl_c_signal_stops_at_the_end_of_the_batch(tiny_digits, tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by someone else here")

    def press_ctrl_c(trainer, epoch, batch):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(tiny_digits, tmp_path, epochs=2, on_batch_end=press_ctrl_c)
    with pytest.raises(TrainingInterrupted) as caught:
        trainer.fit()
    assert (caught.value.epoch, caught.value.batch) == (0, 2)
    assert cyconv.load(tmp_path / "last.npz")["position"]["batch"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back


def test_evaluate_matches_a_manual_forward_pass(tiny_digits):
    (images, labels), _, normalize = tiny_digits
    cyconv.manual_seed(1)
    model = get_model("digits_net")
    result = evaluate(model, images, labels, normalize, batch_size=64)
    with cyconv.no_grad():
        logits = model(cyconv.Tensor(normalize(images))).data
    assert np.array_equal(result.predictions, logits.argmax(axis=1))
    assert result.confusion.sum() == len(labels)
    assert result.accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == labels))
    assert model.training                             # the mode is put back


def test_train_run_writes_everything_and_resumes(tmp_path):
    config = TrainConfig(epochs=1, limit=120, batch_size=40, scheduler="none")
    result = train(config, out_dir=tmp_path / "run", log=quiet, progress=False)
    assert result.status == "finished" and result.epochs_done == 1
    for name in ("best.npz", "last.npz", "metrics.csv", "metrics.json"):
        assert (tmp_path / "run" / name).is_file()
    for name in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert_png(tmp_path / "run" / name)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["test"]["images"] == 359
    assert summary["test"]["accuracy"] == pytest.approx(result.test.accuracy)
    assert len(summary["test"]["confusion_matrix"]) == 10
    saved = check_checkpoint(cyconv.load(tmp_path / "run" / "last.npz"), "last.npz")["config"]
    assert saved["model"] == "digits_net" and saved["limit"] == 120
    assert saved["model_kwargs"] == {"num_classes": 10, "in_channels": 1, "input_size": 8}
    assert len(saved["normalize_mean"]) == 1 and saved["class_names"][3] == "3"

    more = train(resume=tmp_path / "run", changes={"epochs": 2}, log=quiet, progress=False)
    assert more.epochs_done == 2 and more.out_dir == str(tmp_path / "run")
    with pytest.raises(ValueError, match="--lr cannot change"):
        train(resume=tmp_path / "run", changes={"epochs": 3, "lr": 0.5}, log=quiet)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(resume=tmp_path / "run", log=quiet)


# --- plots -----------------------------------------------------------------------------------

def test_plots_are_png_files(tmp_path):
    history = {"epoch": [1, 2, 3], "train_loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.2, 1.3],
               "train_acc": [0.3, 0.6, 0.9], "val_acc": [0.3, 0.5, 0.55]}
    rng = np.random.default_rng(0)
    written = [
        plots.plot_curves(history, tmp_path / "loss.png", "loss", best_epoch=2),
        plots.plot_curves(history, tmp_path / "acc.png", "accuracy"),
        plots.plot_confusion_matrix(rng.integers(0, 9, (10, 10)),
                                    cyconv.data.FASHION_MNIST_CLASSES, tmp_path / "cm.png"),
        plots.plot_filters(rng.normal(size=(6, 1, 5, 5)), tmp_path / "f1.png"),
        plots.plot_filters(rng.normal(size=(8, 3, 3, 3)), tmp_path / "f3.png"),
        plots.plot_filters(rng.normal(size=(4, 6, 3, 3)), tmp_path / "f6.png"),
        plots.plot_feature_maps(rng.normal(size=(1, 16, 10, 10)), tmp_path / "maps.png"),
        plots.plot_image(rng.random((1, 8, 8)), tmp_path / "image.png", "an image"),
    ]
    for path in written:
        assert_png(path)
    with pytest.raises(ValueError, match="metric"):
        plots.plot_curves(history, tmp_path / "x.png", "f1")


# --- image files -----------------------------------------------------------------------------

def test_resampling_area_and_nearest():
    row = np.array([1.0, 3.0, 5.0, 7.0])
    assert resample_axis(row, 2, 0).tolist() == [2.0, 6.0]          # block means
    assert resample_axis(row, 8, 0).tolist() == [1, 1, 3, 3, 5, 5, 7, 7]
    assert resample_axis(np.arange(3.0), 2, 0).tolist() == [0.0, 1.5]


def test_images_become_the_model_input(tmp_path):
    import matplotlib.image as mpimg

    # a 16x16 colour PNG made of 2x2 blocks -> 8x8 grey, the block values exactly
    blocks = np.random.default_rng(0).random((8, 8))
    rgb = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)[:, :, None].repeat(3, axis=2)
    mpimg.imsave(tmp_path / "digit.png", rgb)
    image = load_image(tmp_path / "digit.png", (1, 8, 8))
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert np.allclose(image[0], blocks, atol=1 / 255 + 1e-6)
    assert np.allclose(load_image(tmp_path / "digit.png", (1, 8, 8), invert=True), 1 - image)

    # raw digit counts 0..16 in a .npy, (C, H, W) -> divided by their maximum
    counts = np.zeros((1, 8, 8), np.int64)
    counts[0, 2:6, 3] = 16
    np.save(tmp_path / "counts.npy", counts)
    assert load_image(tmp_path / "counts.npy", (1, 8, 8)).max() == 1.0
    # uint8 (H, W) grey -> 3 channels, enlarged
    grey = to_input_shape(np.full((4, 4), 255, np.uint8), (3, 8, 8))
    assert grey.shape == (3, 8, 8) and np.all(grey == 1.0)
    with pytest.raises(ValueError, match="channels"):
        to_input_shape(np.zeros((5, 6, 7)), (1, 8, 8))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png", (1, 8, 8))
