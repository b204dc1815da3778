"""The one exception type for bad input: a flag, a form field, a file or a setting the user chose.

``UserError`` is a ``ValueError``, so code that catches ``ValueError`` keeps working. Its message says
what to change. Front ends show it as it is (the app as a ``gr.Error``, the command lines as one line
with exit status 2); every other exception is a bug or an environment failure and is logged in full.
``npnet.model`` raises plain ``ValueError`` (it imports nothing of the project); its checks guard
programmatic use, and the front ends validate before they reach it.
"""

import argparse

EXIT_FAILURE = 1  # a command ran and failed (unwritable output, missing input, every sample failed)
EXIT_USAGE = 2  # bad usage: an argparse error or a UserError; the input must change
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(ValueError):
    """Bad input; the message names the input and says the fix."""


def check_whole_number(name: str, value: object, minimum: int, note: str = "") -> int:
    """``value`` as a setting that must be an int >= ``minimum`` (bools refused); ``note`` explains it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}{note}; got {value!r}")
    return value


def one_line(text: object) -> str:
    """``text`` on a single line (a message's own line breaks become '; ')."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2), not the usage block.

    Shared by every front end that parses flags: the command lines, ``python -m eval`` and ``app.py``.
    """

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")
