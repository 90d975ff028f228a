"""The install files agree: the student requirements pin what the full environment pins, and Binder reads them."""
from __future__ import annotations

import re

from book_site import ROOT

STUDENT = ROOT / "requirements-student.txt"


def _pins(path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a requirements or constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_the_student_requirements_pin_the_versions_the_book_was_executed_with():
    student, everything = _pins(STUDENT), _pins(ROOT / "constraints.txt")
    assert {"numpy", "matplotlib", "tqdm", "threadpoolctl", "torch", "jupyterlab"} <= set(student)
    for name, version in student.items():
        assert everything.get(name) == version, f"{name}: {version} here, {everything.get(name)} in constraints.txt"
    lines = STUDENT.read_text().splitlines()
    assert "-e ." in lines                                               # the companion itself
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines   # torch's CPU build


def test_binder_installs_the_student_requirements():
    lines = [line for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines == ["-r ../requirements-student.txt"]


def test_the_companion_declares_what_its_modules_import():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in ("numpy", "tqdm", "threadpoolctl"):
        assert f'"{name}>=' in pyproject, name
