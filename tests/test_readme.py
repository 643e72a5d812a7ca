"""Every Python example in README.md runs (so the README stays true)."""

import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert EXAMPLES, "README.md should show the library in at least one Python example"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index, tmp_path):
    # a fresh interpreter, as a reader would run it; from a scratch directory so that the
    # installed package is used
    result = subprocess.run([sys.executable, "-c", EXAMPLES[index]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
