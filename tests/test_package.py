"""``import companion`` gives every module of the package and imports neither torch nor matplotlib."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import companion

PACKAGE = pathlib.Path(companion.__file__).parent


def test_every_module_is_an_attribute_of_the_package():
    modules = {path.stem for path in PACKAGE.glob("*.py") if not path.stem.startswith("_")}
    modules |= {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert modules <= set(dir(companion)), sorted(modules - set(dir(companion)))
    assert set(companion.__all__) == modules - {"types", "validation"}


def test_import_needs_neither_torch_nor_matplotlib():
    """Run in a fresh interpreter in which ``import torch`` and ``import matplotlib`` fail."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['matplotlib'] = None\n"
        "import companion\n"
        "from companion import bptt, cells, torch_ref\n"
        "cell = cells.Elman(2, 3)\n"
        "hs, cache = bptt.forward(cell, cell.init_params(0), [[[1.0, 2.0]]])\n"
        "print(hs.shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 1, 3)"
