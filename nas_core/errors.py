"""The one base class for errors a user can cause.

Every engine error that a user's input can trigger (a bad spec, a broken data
set, a wrong database path, an unreachable LLM endpoint) subclasses
:class:`UserError`. Its message says what was wrong and what to do. The CLI
prints it as one line with exit code 2; the app shows it with ``st.error``.
Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error caused by the user's input or environment, with a message for them."""
