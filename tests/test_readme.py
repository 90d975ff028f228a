"""The README's "Using the companion" example runs as printed."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from book_site import ROOT


def _example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Using the companion", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's 'Using the companion' section has no python block"
    return match.group(1)


def test_the_using_the_companion_example_runs():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, "-c", _example()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("largest relative error against torch autograd: ")
