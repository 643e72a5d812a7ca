"""The command line: `cyconv demo`, `cyconv info`, and errors without tracebacks."""

import subprocess
import sys

from cyconv.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cyconv", *args], capture_output=True,
                          text=True, timeout=120)


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
    assert "number of threads must be at least 1, got 0" in err
    assert "Traceback" not in err


def test_unknown_command_exits_non_zero():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr
