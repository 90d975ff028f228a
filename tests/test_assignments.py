"""The assignments through nbgrader's whole cycle: student versions generated, reference answers graded
full marks, blank versions zero, seeded wrong answers losing exactly the parts they break, and no
solution text in any student version or in the book.

nbgrader runs on scratch copies of the course directory (``tests/assignment_pipeline.py``); each
assignment gets its own copy and gradebook, so two are graded at a time on two cores.
"""
from __future__ import annotations

import concurrent.futures
import csv
import functools
import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import nbformat
import pytest

import assignment_pipeline as pipeline
from assignment_pipeline import Edit

ROOT = pipeline.ROOT


class Wrong(NamedTuple):
    """A seeded wrong submission: the edits to the reference answers, and the check cells it must fail,
    each with a fragment of the message its feedback must show."""

    edits: list[Edit]
    fails: dict[str, str]


#: assignment -> student id -> the wrong submission that student hands in
WRONG_SUBMISSIONS: dict[str, dict[str, Wrong]] = {
    "elman_bptt": {
        "sign_error_W_hh": Wrong(
            [Edit("elman_gradients", 'grads["W_hh"] += a_bar.T @ h_prev', 'grads["W_hh"] -= a_bar.T @ h_prev')],
            {"check_W_hh": "dL/dW_hh is wrong at the first step back"},
        ),
        "recursion_not_transposed": Wrong(
            [Edit("elman_gradients", 'h_bar = a_bar @ params["W_hh"]', 'h_bar = a_bar @ params["W_hh"].T')],
            {
                "check_W_hh": "dL/dW_hh is wrong at the second step back",
                "check_W_xh": "dL/dW_xh is wrong at the second step back",
                "check_b_h": "dL/db_h is wrong at the second step back",
                "check_h0": "dL/dh_0 is wrong at the first step back",
            },
        ),
    },
    "lstm_backward": {
        "sign_error_output_gate": Wrong(
            [Edit("lstm_step_backward", '"o": do * o * (1.0 - o),', '"o": do * o * (o - 1.0),')],
            {"check_output_gate": "dL/db_o is wrong, so abar^o_t", "check_dh_prev_dx": "wrong with dh alone"},
        ),
        "carousel_without_forget_gate": Wrong(
            [Edit("lstm_step_backward", "dc_prev = f * dc", "dc_prev = dc")],
            {"check_carousel": "your dc_prev equals cbar_t itself"},
        ),
        "loop_drops_the_carry": Wrong(
            [Edit("lstm_backward", "dhs[t] + dh_next, dc_next)", "dhs[t] + dh_next, np.zeros_like(c0))")],
            {"check_through_time": "your lstm_step_backward is right on every step"},
        ),
    },
    "continuous_adjoint": {
        "missing_interior_jumps": Wrong(
            [Edit("adjoint_path", "        h_bar = h_bar + jumps[n]\n", "")],
            {"check_jumps": "the jump of the measurement at t =", "check_route": "dL/dh(0) is wrong"},
        ),
        "sign_error_tau": Wrong(
            [Edit("parameter_gradients", '"tau": -(g * field(params, h, x))', '"tau": (g * field(params, h, x))')],
            {"check_tau": "dL/dtau has the wrong sign"},
        ),
        "jacobian_at_the_left_end": Wrong(
            [Edit("adjoint_path", "adjoint_field(params, hs[n + 1], h_bar)", "adjoint_field(params, hs[n], h_bar)")],
            {
                "check_adjoint_final": "you computed BPTT through the Euler steps",
                "check_jumps": "you computed BPTT through the Euler steps",
                "check_route": "dL/dh(0) is wrong",
            },
        ),
    },
    "rtrl": {
        "immediate_term_only": Wrong(
            [Edit("rtrl_step", "new[key] = new[key] + Jtheta[key]", "new[key] = Jtheta[key]")],
            {
                "check_rtrl_step": "the carried term J_t Pi_(t-1) is missing",
                "check_param_gradients": "your rtrl_step is wrong on this problem too",
            },
        ),
        "transposed_J_in_recursion": Wrong(
            [Edit("rtrl_step", 'np.einsum("bkl,bl...->bk...", J, block)', 'np.einsum("blk,bl...->bk...", J, block)')],
            {
                "check_rtrl_step": "rtrl_step's sens['h0'], Pi^0_t, is wrong at step t = 1",
                "check_param_gradients": "is wrong from step 2 on",
                "check_dh0": "dL/dh_0 is wrong already on the first step alone",
            },
        ),
        "h0_sensitivity_starts_at_zero": Wrong(
            [Edit("rtrl_gradients", "np.broadcast_to(np.eye(H), (B, H, H)).copy()", "np.zeros((B, H, H))")],
            {"check_dh0": "the sensitivities to h_0 start at Pi^0_0 = I, not 0"},
        ),
    },
    "truncated_bptt": {
        # the window one step too long; BPTT(k; k) with k >= T survives it (its window is clipped at step 1)
        "window_off_by_one": Wrong(
            [Edit("backward_points", "max(1, end - k2 + 1)", "max(1, end - k2)")],
            {
                "check_windows": "the pass at step 8 should reach back to step 2, yours to step 1",
                "check_detach": "Your pass: it reaches back to step 4 instead of step 5",
                "check_every_step": "Your pass: it reaches back to step 1 instead of step 2",
                "check_general": "Your pass: it reaches back to step 1 instead of step 2",
            },
        ),
        "last_pass_short_window": Wrong(
            [Edit("backward_points", "passes.append((max(1, end - k2 + 1), first_loss, end))",
                  "passes.append((max(1, first_loss - (k2 - k1)), first_loss, end))")],
            {
                "check_windows": "the pass at step 13 should reach back to step 7, yours to step 10",
                "check_general": "Your pass: it reaches back to step 8 instead of step 7",
            },
        ),
        "losses_from_window_start": Wrong(
            [Edit("tbptt_gradients", "if t >= first_loss:", "if t >= start:")],
            {
                "check_every_step": "the losses of steps 1..1 belong to earlier passes",
                "check_general": "the losses of steps 1..2 belong to earlier passes",
            },
        ),
    },
    "bpts": {
        "children_swapped_in_bpts": Wrong(
            [Edit("tree_adjoints", 'visit(item[0], path + "L", params["W_L"].T @ a_bar)',
                  'visit(item[0], path + "L", params["W_R"].T @ a_bar)'),
             Edit("tree_adjoints", 'visit(item[1], path + "R", params["W_R"].T @ a_bar)',
                  'visit(item[1], path + "R", params["W_L"].T @ a_bar)')],
            {"check_adjoints": "the adjoint of the root's left child is wrong; its parent's is right: it got W_R^T abar_p"},
        ),
        "W_L_overwritten_not_summed": Wrong(
            [Edit("tree_gradients", 'grads["W_L"] += np.outer(a_bar, states[path + "L"])',
                  'grads["W_L"] = np.outer(a_bar, states[path + "L"])')],
            {"check_W_L_W_R": "the gradient of a tied weight is the sum of every node's term"},
        ),
        "direct_gradient_not_averaged": Wrong(
            [Edit("tree_loss", 'direct[path] = params["W_hy"].T @ y_bar / M', 'direct[path] = params["W_hy"].T @ y_bar')],
            {"check_loss": "times too large (L is the mean over the"},
        ),
    },
    "narx": {
        "reversed_feedback_blocks": Wrong(
            [Edit("narx_forward", "Y = np.concatenate(y_line, axis=1)", "Y = np.concatenate(y_line[::-1], axis=1)")],
            {"check_forward": "the delays of W_yh are reversed"},
        ),
        "only_next_step_sends_back": Wrong(
            [Edit("output_adjoints", "for j in range(1, d_y + 1):                    # the steps that read y_t send back",
                  "for j in range(1, 2):                          # the steps that read y_t send back")],
            {"check_output_adjoints": "only the next step sends back"},
        ),
        "open_loop_through_feedback": Wrong(
            [Edit("open_loop", 'abar = (1.0 - h ** 2) * (dys @ params["W_hy"])',
                  'abar = (1.0 - h ** 2) * (output_adjoints(params, h, dys, d_y) @ params["W_hy"])')],
            {"check_open_loop": "it back-propagates through the feedback"},
        ),
    },
    "spiking": {
        "reset_in_the_same_step": Wrong(
            [Edit("lif_forward", "        spikes[t], membranes[t] = S, U",
                  "        U = U - theta * S if reset == \"subtract\" else (1.0 - S) * U\n"
                  "        spikes[t], membranes[t] = S, U")],
            {"check_forward": "the reset is applied in the step of the spike"},
        ),
        "atan_from_the_docstring": Wrong(
            [Edit("surrogate_derivative", "return (slope / 2) / (1.0 + (math.pi * slope * u / 2) ** 2)",
                  "return (1 / math.pi) / (1.0 + (math.pi * slope * u / 2) ** 2)")],
            {"check_surrogate": "this is the formula of snntorch's docstring"},
        ),
        "reset_differentiated": Wrong(
            [Edit("lif_adjoints", "            later = rho * Ubar[t + 1]                        # U_t is read by U_(t+1)",
                  "            later = rho * Ubar[t + 1]                        # U_t is read by U_(t+1)\n"
                  "            nu = -theta if reset == \"subtract\" else -beta * membranes[t]\n"
                  "            Sbar = Sbar + nu * Ubar[t + 1]")],
            {"check_adjoints": "the reset is differentiated"},
        ),
    },
    "classic_training": {
        "rprop_without_forgetting": Wrong(
            [Edit("irprop_minus_step",
                  "    grad = np.where(agreement < 0, 0.0, grad)        # forget the gradient after a sign change\n", "")],
            {"check_irprop": "you forgot to zero the remembered gradient"},
        ),
        "joseph_short_form": Wrong(
            [Edit("joseph_update", "return A @ P @ A.T + K @ R @ K.T", "return A @ P")],
            {"check_joseph": "it is the short form (I - K H) P"},
        ),
        "decoupled_per_block_S": Wrong(
            [Edit("decoupled_ekf_update", "K_g = np.linalg.solve(S, H_g @ P_g).T",
                  "K_g = np.linalg.solve(R + share, H_g @ P_g).T")],
            {"check_decoupled": "each group used its own S_g = R + H_g P_g H_g^T"},
        ),
    },
}

ASSIGNMENTS = pipeline.assignment_names()


def _grade(assignment: str, course: pathlib.Path) -> None:
    """Generate ``assignment`` in ``course``, hand in every kind of submission, and autograde them."""
    pipeline.nbgrader(course, "generate_assignment", assignment, "--force")
    notebook = pipeline.notebook_name(assignment)
    release = nbformat.read(course / "release" / assignment / notebook, as_version=4)
    source = nbformat.read(course / "source" / assignment / notebook, as_version=4)
    pipeline.submit(course, assignment, "reference", pipeline.answered(release, source))
    pipeline.submit(course, assignment, "blank", release)
    for student, wrong in WRONG_SUBMISSIONS.get(assignment, {}).items():
        pipeline.submit(course, assignment, student, pipeline.answered(release, source, wrong.edits))
    pipeline.nbgrader(course, "autograde", assignment, "--force")


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, pathlib.Path]:
    """assignment -> its graded scratch course directory."""
    courses = {name: pipeline.course_copy(tmp_path_factory.mktemp(name)) for name in ASSIGNMENTS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(_grade, name, course) for name, course in courses.items()]:
            future.result()
    return courses


def test_every_assignment_is_tested_with_wrong_submissions():
    assert ASSIGNMENTS, "no assignment in assignments/source"
    assert set(WRONG_SUBMISSIONS) == set(ASSIGNMENTS)
    for assignment, wrongs in WRONG_SUBMISSIONS.items():
        autograded = {cell for cell, auto in pipeline.graded_cells(assignment).items() if auto}
        for student, wrong in wrongs.items():
            assert wrong.fails and set(wrong.fails) < autograded, (assignment, student)


def _split_source(assignment: str) -> tuple[set[str], set[str]]:
    """(the lines of the source's solutions and hidden tests, every other line of the source), stripped."""
    source = nbformat.read(pipeline.SOURCE / assignment / pipeline.notebook_name(assignment), as_version=4)
    secret, public = set(), set()
    for cell in source.cells:
        region = None
        for line in cell.source.splitlines():
            marker = line.strip()
            if marker in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"):
                region = marker
            elif marker in ("### END SOLUTION", "### END HIDDEN TESTS"):
                region = None
            elif marker:
                (secret if region else public).add(marker)
    return secret, public


@functools.cache
def _course_text() -> str:
    """What the course publishes anyway: the chapters' and pages' sources, the companion's code, and the
    public cells of every assignment."""
    chapters = [path for path in sorted((ROOT / "book").glob("*.ipynb")) if not path.name.startswith("assignment_")]
    texts = ["\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells) for path in chapters]
    texts += [path.read_text() for path in sorted((ROOT / "book").glob("*.md"))]
    texts += [path.read_text() for path in sorted((ROOT / "companion").rglob("*.py"))]
    texts += ["\n".join(_split_source(assignment)[1]) for assignment in ASSIGNMENTS]
    return "\n".join(texts)


def _secret_lines(assignment: str) -> set[str]:
    """Lines of the source's solutions and hidden tests that appear nowhere in what the course publishes
    anyway (not even inside a longer line, as a formula an instruction quotes): a chapter's teaching code,
    a plotting line or a public cell of another assignment can coincide with a line of a solution."""
    secret, _ = _split_source(assignment)
    return {line for line in secret if len(line) >= 12 and line not in _course_text()}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_has_no_solution_text(graded, assignment):
    release = graded[assignment] / "release" / assignment / pipeline.notebook_name(assignment)
    text = release.read_text()
    secrets = _secret_lines(assignment)
    assert len(secrets) >= 30, "too few solution lines to check"
    leaked = [line for line in secrets if line in text]
    assert not leaked, f"solution text in the student version: {leaked[:5]}"
    notebook = nbformat.read(release, as_version=4)
    solutions = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("solution")]
    assert solutions and all(
        ("raise NotImplementedError()" if cell.cell_type == "code" else "YOUR ANSWER HERE") in cell.source
        for cell in solutions
    )
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_book_shows_the_current_student_version(graded, assignment):
    name = pipeline.notebook_name(assignment)
    released = (graded[assignment] / "release" / assignment / name).read_bytes()
    assert (ROOT / "book" / name).read_bytes() == released, "run scripts/release_assignments.py"
    toc = (ROOT / "_toc.yml").read_text()
    assert f"book/{name[:-len('.ipynb')]}" in toc


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_answers_score_full_marks(graded, assignment):
    grades = pipeline.gradebook_scores(graded[assignment], assignment)["reference"]
    kinds = pipeline.graded_cells(assignment)
    assert set(grades) == set(kinds)
    auto = {cell: grade for cell, grade in grades.items() if kinds[cell]}
    assert sum(grade.max_score for grade in auto.values()) == 10
    assert all(grade.score == grade.max_score for grade in auto.values()), auto
    by_hand = [grade for cell, grade in grades.items() if not kinds[cell]]
    assert by_hand and all(grade.needs_manual_grade for grade in by_hand)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_blank_version_scores_zero(graded, assignment):
    grades = pipeline.gradebook_scores(graded[assignment], assignment)["blank"]
    assert set(grades) == set(pipeline.graded_cells(assignment))
    assert all(grade.score == 0 and not grade.needs_manual_grade for grade in grades.values()), grades
    outputs = pipeline.cell_outputs(graded[assignment] / "autograded" / "blank" / assignment / pipeline.notebook_name(assignment))
    for cell, auto in pipeline.graded_cells(assignment).items():
        if auto:
            assert "is not implemented yet" in outputs[cell], (cell, outputs[cell])


@pytest.mark.parametrize(
    "assignment, student", [(name, student) for name, wrongs in WRONG_SUBMISSIONS.items() for student in wrongs]
)
def test_wrong_submission_loses_exactly_the_parts_it_breaks(graded, assignment, student):
    wrong = WRONG_SUBMISSIONS[assignment][student]
    grades = pipeline.gradebook_scores(graded[assignment], assignment)[student]
    kinds = pipeline.graded_cells(assignment)
    for cell, grade in grades.items():
        if kinds[cell]:
            assert grade.score == (0 if cell in wrong.fails else grade.max_score), (cell, grade)
    outputs = pipeline.cell_outputs(graded[assignment] / "autograded" / student / assignment / pipeline.notebook_name(assignment))
    for cell, message in wrong.fails.items():
        assert "GradingError: " in outputs[cell] and message in outputs[cell], (cell, outputs[cell])


def test_no_solution_text_on_the_site(built_site):
    html, _ = built_site
    secrets = {line for assignment in ASSIGNMENTS for line in _secret_lines(assignment)}
    leaked = {}
    for path in html.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".ipynb", ".md", ".txt", ".json"}:
            text = path.read_text(errors="ignore")
            found = [line for line in secrets if line in text]
            if found:
                leaked[str(path.relative_to(html))] = found[:3]
    assert not leaked, leaked
    for assignment in ASSIGNMENTS:
        page = html / "book" / (pipeline.notebook_name(assignment)[:-len(".ipynb")] + ".html")
        assert page.exists() and re.search(r"NotImplementedError", page.read_text())


def _workflow_block(path: pathlib.Path = ROOT / "book" / "instructors.md") -> str:
    """The shell block of a page that runs the instructor's workflow."""
    blocks = [block for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S) if "nbgrader export" in block]
    assert len(blocks) == 1, f"{path.name} must hold one bash block with the workflow"
    return blocks[0]


def test_the_readme_shows_the_workflow_of_the_instructors_page():
    assert _workflow_block(ROOT / "README.md") == _workflow_block()


def test_instructor_workflow_runs_as_written(tmp_path):
    """The page's commands, from the top folder of a fresh copy, end in a grades table and feedback."""
    pipeline.course_copy(tmp_path / "assignments")
    (tmp_path / ".venv").symlink_to(pathlib.Path(sys.prefix), target_is_directory=True)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", _workflow_block()], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    with open(tmp_path / "assignments" / "grades.csv", newline="") as file:
        rows = {row["student_id"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"alice", "bob"}
    assert float(rows["alice"]["score"]) == 0 and float(rows["bob"]["score"]) == 10
    assert float(rows["bob"]["max_score"]) == 14
    for student in rows:
        feedback = tmp_path / "assignments" / "feedback" / student / "elman_bptt" / "assignment_elman_bptt.html"
        assert "GradingError" in feedback.read_text() or student == "bob"
