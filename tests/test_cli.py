"""The command line: `cyconv demo`, `cyconv info`, and errors without tracebacks."""

import pathlib
import subprocess
import sys

from cyconv.cli import main


# Subprocesses run from the tests folder, not the repository root: there ``python -m``
# would import the source folder (which holds no compiled kernels) instead of the installed
# package.
OUTSIDE_SOURCES = pathlib.Path(__file__).resolve().parent


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cyconv", *args], capture_output=True,
                          text=True, timeout=120, cwd=OUTSIDE_SOURCES)


def test_demo_checks_against_the_reference():
    result = run_cli("demo", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "-> OK" in result.stdout
    assert "max_pool2d 2x2, stride 2 (4x4):" in result.stdout


def test_demo_edges(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # the vertical-edge kernel answers -4 on the left edge of the square and +4 on the right
    assert "  -4.00  -4.00   0.00   0.00   4.00   4.00" in out


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "OpenMP:" in out and "threads:" in out


def test_bad_thread_count_is_a_short_error(capsys):
    assert main(["demo", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "argument --threads: expected a positive integer, got '0'" in err
    assert "Traceback" not in err


def test_unknown_command_exits_non_zero():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


# --- train / evaluate / summary / visualize ----------------------------------------------------
# Tiny settings throughout: 1 epoch on a couple of hundred of the built-in digits.

import json
import os
import shutil
import struct

import numpy as np
import pytest

import cyconv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == PNG_SIGNATURE


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny `cyconv train` run shared by the tests that read its files."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--epochs", "1", "--limit", "200", "--batch-size", "50",
                 "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_train_writes_checkpoints_metrics_and_plots(trained_run, capsys):
    for name in ("best.npz", "last.npz", "metrics.csv", "metrics.json"):
        assert (trained_run / name).is_file(), name
    for name in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert is_png(trained_run / name), name
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert summary["status"] == "finished" and len(summary["history"]) == 1
    assert summary["config"]["limit"] == 200 and summary["config"]["dataset"] == "digits"
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0


def test_train_prints_progress_lines_and_the_test_accuracy(tmp_path, capsys):
    assert main(["train", "--epochs", "2", "--limit", "100", "--out", str(tmp_path / "r"),
                 "--optimizer", "sgd", "--scheduler", "step", "--no-augment"]) == 0
    out = capsys.readouterr().out
    assert "training digits_net on digits: 100 training / 359 validation images" in out
    assert "sgd lr 0.05 momentum 0.9" in out and "no augmentation" in out
    assert out.count("train loss") == 2 and "epoch 2/2" in out
    assert "test accuracy: " in out and "(lowest validation loss)" in out
    for name in ("best.npz", "last.npz", "metrics.csv", "loss.png", "confusion_matrix.png"):
        assert f"  {tmp_path / 'r' / name}\n" in out


def test_train_default_out_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--limit", "64", "--quiet"]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("digits-digits_net-")
    assert (runs[0] / "last.npz").is_file()


def test_evaluate_prints_accuracy_per_class_and_confusion_matrix(trained_run, capsys):
    assert main(["evaluate", str(trained_run / "best.npz")]) == 0
    out = capsys.readouterr().out
    assert "test split: 359 images" in out and "accuracy: " in out
    assert "per-class accuracy:" in out and "confusion matrix" in out
    matrix = out.split("confusion matrix")[1].splitlines()[2:12]
    counts = np.array([[int(v) for v in line.split()[1:]] for line in matrix])
    assert counts.shape == (10, 10) and counts.sum() == 359
    stated = json.loads((trained_run / "metrics.json").read_text())["test"]["accuracy"]
    assert f"{100 * stated:.2f}%" in out        # the same weights as the run's test score
    assert main(["evaluate", str(trained_run), "--split", "val"]) == 0   # a run dir: last.npz
    assert "val split: 359 images" in capsys.readouterr().out


def test_summary_lenet5(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "[1, 6, 28, 28]" in out
    assert main(["summary", "lenet5", "--input-shape", "1,28,28", "--num-classes", "5"]) == 0
    assert "Total params: 61,281" in capsys.readouterr().out   # 61,706 - (84 + 1) * 5
    assert main(["summary", "digits-net"]) == 0
    assert "input (1, 8, 8)" in capsys.readouterr().out


def test_visualize_writes_pngs(trained_run, tmp_path, capsys):
    out_dir = tmp_path / "vis"
    assert main(["visualize", str(trained_run / "best.npz"), "--index", "5",
                 "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "test image 5: predicted" in printed
    names = sorted(os.listdir(out_dir))
    assert names == ["feature_maps_01_features.0.png", "feature_maps_02_features.3.png",
                     "filters.png", "input.png"]
    assert all(is_png(out_dir / name) for name in names)
    assert all(f"  {out_dir / name}\n" in printed for name in names)

    image = np.zeros((32, 32), np.uint8)
    image[4:28, 14:18] = 255                     # a "1", larger than the model's 8x8
    np.save(tmp_path / "one.npy", image)
    assert main(["visualize", str(trained_run / "best.npz"), "--image",
                 str(tmp_path / "one.npy"), "--out", str(tmp_path / "vis2")]) == 0
    assert "one.npy: predicted" in capsys.readouterr().out
    assert is_png(tmp_path / "vis2" / "input.png")


def test_resume_from_the_command_line_equals_a_straight_run(tmp_path, restore_threads, capsys):
    common = ["--limit", "96", "--batch-size", "32", "--scheduler", "none", "--threads", "1",
              "--quiet"]
    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "straight")] + common) == 0
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "split")] + common) == 0
    assert main(["train", "--resume", str(tmp_path / "split" / "last.npz"), "--epochs", "2",
                 "--quiet"]) == 0
    a = cyconv.load(tmp_path / "straight" / "last.npz")
    b = cyconv.load(tmp_path / "split" / "last.npz")
    assert b["epoch"] == 2 and b["config"]["threads"] == 1
    assert all(np.array_equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"]["val_loss"] == b["history"]["val_loss"]


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path, monkeypatch, capsys):
    from cyconv.training import experiment, trainer

    class InterruptedTrainer(trainer.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.on_batch_end = self.press_ctrl_c

        @staticmethod
        def press_ctrl_c(trainer, epoch, batch):
            if batch == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "Trainer", InterruptedTrainer)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--limit", "160", "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted in epoch 1, after batch 2/5" in err
    assert f"continue with: cyconv train --resume {out / 'last.npz'}" in err
    assert "Traceback" not in err
    saved = cyconv.load(out / "last.npz")
    assert saved["status"] == "interrupted" and saved["position"]["batch"] == 2
    monkeypatch.undo()
    assert main(["train", "--resume", str(out / "last.npz"), "--quiet"]) == 0
    assert cyconv.load(out / "last.npz")["epoch"] == 3


def test_a_real_ctrl_c_stops_the_process_cleanly(tmp_path):
    import signal

    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "cyconv", "train", "--epochs", "50", "--limit", "200",
         "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = ""
        while "epoch  1/50" not in line:        # the first epoch is over: a checkpoint exists
            line = process.stdout.readline()
            assert line, "the training ended before printing its first epoch"
        process.send_signal(signal.SIGINT)
        out_text, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Ctrl-C: stopping at the end of this batch" in err
    assert "continue with: cyconv train --resume" in err and "Traceback" not in err
    saved = cyconv.load(out / "last.npz")
    assert saved["status"] == "interrupted" and saved["epoch"] >= 1


def write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + \
        b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.tobytes())


def test_train_and_evaluate_on_mnist_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "mnist"
    data.mkdir()
    for prefix, n in (("train", 80), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 50, (n, 28, 28))
        images[np.arange(n), 2 + 2 * labels, 4:24] = 255   # a bright row at a class position
        write_idx(data / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", labels)
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"mnist:{data}", "--epochs", "1", "--out", str(out),
                 "--quiet"]) == 0
    saved = cyconv.load(out / "best.npz")["config"]
    assert saved["model"] == "lenet5"
    assert saved["model_kwargs"] == {"num_classes": 10, "in_channels": 1, "input_size": 28}
    moved = tmp_path / "moved"
    shutil.move(str(data), str(moved))
    assert main(["evaluate", str(out / "best.npz")]) == 2
    assert str(data) in capsys.readouterr().err          # the missing directory is named
    assert main(["evaluate", str(out / "best.npz"), "--dataset", f"mnist:{moved}"]) == 0
    assert "test split: 20 images" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "alexnet"], "unknown model 'alexnet'"),
    (["train", "--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["train", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["train", "--dataset", "mnist:/nonexistent/mnist", "--quiet"], "/nonexistent/mnist"),
    (["train", "--dataset", "imagenet", "--quiet"], "unknown dataset 'imagenet'"),
    (["train", "--model", "lenet5", "--quiet"], "for 8x8 images use DigitsNet"),
    (["summary", "lenet5", "--input-shape", "1,32"], "expected C,H,W"),
    (["summary", "lenet5", "--input-shape", "a,b,c"], "expected C,H,W"),
    (["summary", "resnet_small", "--input-shape", "3,32,16"], "square"),
    (["summary", "nonet"], "unknown model 'nonet'"),
    (["evaluate", "/nonexistent/best.npz"], "checkpoint not found: /nonexistent/best.npz"),
    (["visualize", "/nonexistent/best.npz"], "checkpoint not found"),
    (["train", "--resume", "/nonexistent/last.npz"], "checkpoint not found"),
])
def test_bad_arguments_are_short_errors(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert f"cyconv {argv[0]}: error:" in err
    assert "Traceback" not in err


def test_errors_about_files_and_runs(trained_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    cyconv.save({"weight": np.zeros(3)}, tmp_path / "plain.npz")
    cases = [
        (["evaluate", str(tmp_path / "notes.txt")], "not a cyconv checkpoint"),
        (["evaluate", str(tmp_path / "plain.npz")], "not a training checkpoint"),
        (["train", "--out", str(trained_run), "--quiet"], "already holds a training run"),
        (["train", "--resume", str(trained_run), "--lr", "0.5"], "--lr cannot change"),
        (["train", "--resume", str(trained_run)], "nothing to resume"),
        (["visualize", str(trained_run / "best.npz"), "--index", "400"], "--index must be in"),
        (["visualize", str(trained_run / "best.npz"), "--image", str(tmp_path / "none.png")],
         "image file not found"),
        (["visualize", str(trained_run / "best.npz"), "--image", str(tmp_path / "notes.txt")],
         "cannot read this image"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_errors_from_a_real_process_have_no_traceback():
    result = run_cli("train", "--dataset", "cifar10:/nonexistent/cifar", "--quiet")
    assert result.returncode == 2
    assert "cyconv train: error: cifar10 directory not found: /nonexistent/cifar" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("evaluate", "missing.npz")
    assert result.returncode == 2 and "Traceback" not in result.stderr
