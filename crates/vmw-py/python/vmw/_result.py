"""The outcome of a command run in a guest, as pycloudlib hands it back."""

from __future__ import annotations


class Result(str):
    """A command's standard output, as a string, with its standard error and
    exit status beside it. Its truth value is whether the command
    succeeded (exit status 0), not whether it printed anything:
    ``assert instance.execute("true")`` holds."""

    stdout: str
    stderr: str
    return_code: int

    def __new__(cls, stdout: str, stderr: str = "", return_code: int = 0) -> Result:
        text = super().__new__(cls, stdout)
        text.stdout = stdout
        text.stderr = stderr
        text.return_code = return_code
        return text

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.return_code == 0

    @property
    def failed(self) -> bool:
        """Whether the command exited with another status (or a signal)."""
        return not self.ok

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return (
            f"Result(stdout={self.stdout!r}, stderr={self.stderr!r}, "
            f"return_code={self.return_code!r})"
        )
