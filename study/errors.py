"""Errors a user can fix: printed as one line naming the bad value and what is allowed, never as a traceback."""


class StudyError(Exception):
    """Bad input or an unreachable resource. The message is the whole story, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
