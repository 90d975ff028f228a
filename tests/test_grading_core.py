"""The message helpers that several graders share (``companion.grading.core``)."""
import numpy as np

from companion.grading.core import GradingError, first_wrong_output, other_part_note


def test_first_wrong_output_names_the_earliest_and_breaks_ties_by_order():
    right = np.arange(12.0).reshape(4, 3)
    late, early = right.copy(), right.copy()
    late[3, 0] += 1.0
    early[1, 2] += 1.0
    assert first_wrong_output({"a": (right, right), "b": (right, right)}) is None
    assert first_wrong_output({"a": (late, right), "b": (early, right)}) == (1, "b")
    assert first_wrong_output({"a": (early, right), "b": (early, right)}) == (1, "a")
    assert first_wrong_output({"b": (early, right), "a": (early, right)}) == (1, "b")


def test_other_part_note_runs_every_check_on_the_seed():
    seen = []

    def passes(function, seeds):
        seen.append(("passes", function, seeds))

    def fails(function, seeds):
        seen.append(("fails", function, seeds))
        raise GradingError("wrong")

    assert other_part_note(None, [fails], 3, wrong="W", right="R") == ""
    assert seen == []
    assert other_part_note(len, [passes, passes], 3, wrong="W", right="R") == "R"
    assert other_part_note(len, [passes, fails], 4, wrong="W", right="R") == "W"
    assert seen[-2:] == [("passes", len, (4,)), ("fails", len, (4,))]
