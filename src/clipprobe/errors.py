"""The one error a user sees: one line naming the culprit and the fix."""


class ClipprobeError(Exception):
    """A user-facing error: one line naming the culprit and the fix.

    Stage scripts print it without a traceback and exit with status 1.
    """
