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

