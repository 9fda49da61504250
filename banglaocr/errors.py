"""The one error type users see: a clear message and an exit code, never a traceback.

Library code raises `UserError` for bad input (a broken recipe, a missing file, a
renderer without Bangla shaping); the CLI prints its message on one line and exits
with `exit_code`.

>>> err = UserError("data.source: no such folder 'x'")
>>> err.exit_code
2
"""


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2 unless told otherwise."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors.

    >>> first_line(OSError("offline\\nlong details")), first_line(ValueError())
    ('offline', 'ValueError')
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
