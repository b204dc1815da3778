"""The one exception type for bad input: a flag, a form field, a file or a setting the user chose.

``UserError`` is a ``ValueError``, so code that catches ``ValueError`` keeps working. Its message says
what to change. Front ends show it as it is (the app as a ``gr.Error``, the command lines as one line
with exit status 2); every other exception is a bug or an environment failure and is logged in full.
``npnet.model`` raises plain ``ValueError`` (it imports nothing of the project); its checks guard
programmatic use, and the front ends validate before they reach it.
"""


class UserError(ValueError):
    """Bad input; the message names the input and says the fix."""
