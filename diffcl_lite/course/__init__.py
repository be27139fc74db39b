"""Instructor tooling: the notebook runner, strip/check, the static site, student copies and grading.

Nothing here imports the method, the datasets or the lessons (``tests/test_architecture.py``), and
``import diffcl_lite`` never imports this package; the command line loads it inside its commands.

===============  ==========================================================================================
module           what it holds
===============  ==========================================================================================
``convention``   the notebook convention: cell tags, golden marker, kernel name, cell helpers
``runner``       the one notebook runner (nbclient polled in steps: jupyter/nbclient#312)
``nbtools``      strip / check / git clean filter / golden outputs; ``execute`` (``make figures``)
``site``         the static site of the executed notebooks (``make site``)
``masters``      master notebooks: exercises and convention problems
``classroom``    student copies and the ``classroom`` commands
``grade``        grading a folder of submissions (see its docstring for the pipeline)
``worker``       one isolated, resource-limited kernel run (a plain script started per submission)
``sandbox``      the namespace sandbox of one kernel (a plain script)
``kernel``       the resource-limited IPython kernel inside the sandbox
``runtime``      what the grader runs inside the kernels (records values, judges them)
``values``       values as plain data between the kernels
``static``       static analysis of a learner's code (reference names, findings, flags)
===============  ==========================================================================================
"""

__all__: list[str] = []
