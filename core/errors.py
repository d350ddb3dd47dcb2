"""The project's one exception root, so the CLI and the console can tell an operator's mistake
or a server's refusal (a clear one-line message) from a bug (a traceback)."""


class HiMoeError(Exception):
    """An error with a message meant for the operator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
