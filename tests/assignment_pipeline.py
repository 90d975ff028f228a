"""Run nbgrader's instructor workflow on a copy of the course directory, for the assignment tests.

Every function works on a copy (``course_copy``), never on ``assignments/`` itself, so the tests leave an
instructor's gradebook and release folder alone.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import warnings
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "assignments" / "source"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")

_spec = importlib.util.spec_from_file_location("release_assignments", ROOT / "scripts" / "release_assignments.py")
release_assignments = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release_assignments)
assignment_names = release_assignments.assignment_names
notebook_name = release_assignments.notebook_name
course_copy = release_assignments.course_copy
nbgrader = release_assignments.nbgrader


class Edit(NamedTuple):
    """A seeded mistake: replace ``old`` by ``new`` in the solution cell ``cell`` of the reference answers."""

    cell: str
    old: str
    new: str


def solution_text(cell_source: str) -> str:
    """A solution cell's text between nbgrader's markers, without the markers' lines."""
    return "\n".join(line for line in cell_source.splitlines() if line.strip() not in SOLUTION_MARKERS)


def answered(release: nbformat.NotebookNode, source: nbformat.NotebookNode, edits: Iterable[Edit] = ()) -> nbformat.NotebookNode:
    """The released notebook as a student who wrote the reference answers (and ``edits``) hands it in.

    Every solution cell of ``release`` gets the source's text without the markers; each edit replaces
    text that must occur exactly once in its cell, so an edit that no longer matches fails loudly.
    """
    answers = {cell.metadata["nbgrader"]["grade_id"]: solution_text(cell.source)
               for cell in source.cells if cell.metadata.get("nbgrader", {}).get("solution")}
    for edit in edits:
        count = answers[edit.cell].count(edit.old)
        assert count == 1, f"the edit {edit.old!r} occurs {count} times in cell {edit.cell!r}, expected once"
        answers[edit.cell] = answers[edit.cell].replace(edit.old, edit.new)
    student = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in student.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return student


def submit(course: pathlib.Path, assignment: str, student: str, notebook: nbformat.NotebookNode) -> None:
    """Put ``notebook`` where nbgrader's autograde looks for ``student``'s submission."""
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / notebook_name(assignment))


class Grade(NamedTuple):
    """One graded cell of one submission, as the gradebook holds it."""

    score: float
    max_score: float
    needs_manual_grade: bool


def graded_cells(assignment: str) -> dict[str, bool]:
    """grade cell id -> whether it is autograded (a test cell; False: an answer graded by hand), from the source."""
    notebook = nbformat.read(SOURCE / assignment / notebook_name(assignment), as_version=4)
    return {cell.metadata["nbgrader"]["grade_id"]: not cell.metadata["nbgrader"].get("solution", False)
            for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade")}


def gradebook_scores(course: pathlib.Path, assignment: str) -> dict[str, dict[str, Grade]]:
    """student id -> grade cell id -> ``Grade``, read from the course's ``gradebook.db``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # sqlalchemy's and nbgrader's own deprecation notices
        from nbgrader.api import Gradebook

        scores: dict[str, dict[str, Grade]] = {}
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
            for submission in gradebook.assignment_submissions(assignment):
                cells = scores.setdefault(submission.student.id, {})
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        cells[grade.name] = Grade(float(grade.score), float(grade.max_score), bool(grade.needs_manual_grade))
    return scores


def cell_outputs(notebook_path: pathlib.Path) -> Mapping[str, str]:
    """grade cell id -> the text of its outputs (error names, messages, printed text) in a graded notebook."""
    notebook = nbformat.read(notebook_path, as_version=4)
    texts = {}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id and cell.cell_type == "code":
            parts = []
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    parts.append(f"{output.ename}: {output.evalue}")
                elif output.output_type == "stream":
                    parts.append(output.text)
            texts[grade_id] = "\n".join(parts)
    return texts
