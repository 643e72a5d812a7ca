"""Run every script of examples/ on its tiny setting, so that none of them rots.

Each runs in a subprocess, in a temporary directory (files it writes land there), with the
quick flag and the Agg backend of matplotlib (no window). The cyconv being tested is put
first on PYTHONPATH so that the scripts import the same package as these tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cyconv

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    package_root = str(Path(cyconv.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert scripts == ["01_loops_vs_kernel.py", "02_edge_kernels.py", "03_conv_as_matrix.py",
                       "04_train_lenet.py", "05_transfer_learning.py"]
    for script in scripts:                               # each says what it teaches and how to run
        text = (EXAMPLES / script).read_text()
        assert "What it teaches" in text and "How to run" in text and "--quick" in text, script


def test_01_loops_vs_kernel(tmp_path):
    out = run_example("01_loops_vs_kernel.py", tmp_path)
    assert "same numbers: True" in out
    assert "times faster than the Python loops" in out


def test_02_edge_kernels(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("02_edge_kernels.py", tmp_path, "--out", "grid.png")
    png = tmp_path / "grid.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sobel_x" in out and "vertical edges" in out and "horizontal edges" in out
    assert "wrote grid.png" in out


def test_02_edge_kernels_default_output(tmp_path):
    pytest.importorskip("matplotlib")
    run_example("02_edge_kernels.py", tmp_path)
    assert (tmp_path / "edge_kernels.png").exists()


def test_03_conv_as_matrix(tmp_path):
    out = run_example("03_conv_as_matrix.py", tmp_path)
    assert "y[0,0] | a b c . | d e f . | g h i . | . . . . |" in out
    assert "y[1,1] | . . . . | . a b c | . d e f | . g h i |" in out
    assert "M @ x == conv2d: True" in out
    assert "convolution 9, fully connected layer with the same input and output sizes 64" in out


def test_04_train_lenet(tmp_path):
    out = run_example("04_train_lenet.py", tmp_path)
    assert "epoch  1: loss" in out and "test accuracy" in out
    assert "epoch  2" not in out                          # --quick: one epoch
    assert "final test accuracy:" in out


def test_05_transfer_learning(tmp_path):
    out = run_example("05_transfer_learning.py", tmp_path)
    assert "pretrained on digits 0-4" in out
    assert "frozen weights unchanged: True" in out
    assert "the head learned" in out
