"""The graders of the course's assignments: the companion as the grading oracle.

Each module grades one assignment of ``assignments/source``: its checks draw problems of random shapes from
seeds, compute the answer with the companion's tested implementation, and raise ``GradingError`` with a
message for the student (which quantity is wrong, where, and on which problem) when the student's function
disagrees. The assignments' autograded test cells call these checks.

* ``core``: the feedback error and the comparisons every grader shares;
* ``elman``: the Elman network's forward and backward pass.
"""
from . import core, elman
from .core import GradingError

__all__ = ["GradingError", "core", "elman"]
