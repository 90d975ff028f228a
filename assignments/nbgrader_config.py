"""nbgrader's settings for the course's assignments: this folder is nbgrader's course directory.

Run every nbgrader command from this folder (``cd assignments``); nbgrader reads this file from the
current directory. The instructor's workflow is on the book's page "For instructors" (book/instructors.md).
"""
c = get_config()  # noqa: F821 (nbgrader defines get_config when it reads this file)

c.CourseDirectory.course_id = "bptt"
# what a student's blank solution cell holds
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# a notebook that runs longer than this while autograding is stopped (a student's endless loop)
c.Execute.timeout = 300
# `nbgrader zip_collect NAME` reads the files downloaded from a learning platform, named
# <student id>_<notebook>.ipynb, from downloaded/NAME/archive/ (zip archives of such files too)
c.FileNameCollectorPlugin.named_regexp = r".*/(?P<student_id>[^/_]+)_(?P<file_id>assignment_\w+)\.ipynb$"
