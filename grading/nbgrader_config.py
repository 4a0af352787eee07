"""nbgrader settings for a course built from Mail Labs: copy this file into the course
directory (the folder that holds ``source/``), beside nothing else of nbgrader's.

See INSTRUCTORS.md, "Grading with nbgrader".
"""

import os

c = get_config()  # noqa: F821 - nbgrader provides get_config() when it reads this file

# The check cells score nothing for an answer not given yet (labsupport.teach.verdicts):
# nbgrader's kernels inherit this process's environment.
os.environ["MAIL_LABS_GRADING"] = "1"

# What replaces each solution in the released notebooks: the stub the labs' own student
# edition uses (scripts/student.py), which the check cells read as "not answered yet".
c.ClearSolutions.code_stub = {"python": 'raise NotImplementedError("your answer here")'}

# A notebook starts the whole lab (DNS, mail roles) in its first cells; some cells wait
# for mail to arrive. Each answers in about a second, so a minute is generous.
c.Execute.timeout = 60
