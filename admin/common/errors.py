"""The one exception type pipeline steps raise for bad input."""


class AdminError(Exception):
    """A user-facing error: the message names the file, key, URL or value at fault.

    CLIs catch it, print the message without a traceback and exit 2.
    """
