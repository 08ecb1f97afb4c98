"""The one exception type for mistakes a user can make.

Every package raises :class:`UserError` for bad input (an unknown preset, an
out-of-range value, a missing folder, ...). The message names the problem and what
is allowed; the command line prints it as one line and exits non-zero, never with a
traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one clear message."""
