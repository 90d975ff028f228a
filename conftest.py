"""Test-suite settings shared by the unit tests and the nbval kernels.

BLAS thread counts can change the last digits of a matmul, so the suite (and the kernels nbval starts,
which inherit this environment) use one thread, as ``scripts/execute_chapters.py`` does.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

# The assignments' student versions (scripts/release_assignments.py) are shown unexecuted, with blank
# answers that raise NotImplementedError: tests/test_assignments.py runs them through nbgrader instead.
collect_ignore_glob = ["book/assignment_*.ipynb"]
