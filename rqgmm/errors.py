"""Exceptions that carry a message meant for the user.

``InputError`` marks bad input or usage: the command line prints its message on
one line and exits with status 2. Anything else is an internal error (status 1).
"""


class InputError(ValueError):
    """Bad input or usage; the message says what was wrong and how to fix it."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its iteration limit before meeting its tolerance.

    The project's own class (importing scikit-learn's would add a second to every
    command's start-up); filter it as ``rqgmm.ConvergenceWarning``.
    """


def exit_status(work) -> int:
    """Run ``work()`` (a module's ``main``): 0, or 2 with the InputError's one line on stderr."""
    import sys

    try:
        work()
    except InputError as exc:
        sys.stderr.write(f"rqgmm: error: {exc}\n")
        return 2
    return 0
