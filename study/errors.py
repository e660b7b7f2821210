"""Errors a user can fix: printed as one line naming the bad value and what is allowed, never as a traceback."""


class StudyError(Exception):
    """Bad input or an unreachable resource. The message is the whole story, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class RunFailed(Exception):
    """A run that could not go on (e.g. its loss diverged, a file it needs is corrupt): recorded `failed` with this
    one line as its error, exit 1. Not bad input: the command itself was fine."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class Interrupted(BaseException):
    """A signal stopped the run (SIGTERM, SIGINT, a scheduler's pre-timeout signal): recorded `interrupted`,
    then the whole command exits 128 + the signal's number (a multirun stops too). A BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int, step: int | None = None, requeued: bool = False):
        import signal

        self.signum, self.step, self.requeued = int(signum), step, requeued
        self.name = signal.Signals(self.signum).name
        at = f" at step {step}" if step is not None else ""
        super().__init__(f"{self.name}{at}" + ("; requeued" if requeued else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
