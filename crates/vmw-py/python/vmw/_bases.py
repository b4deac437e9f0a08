"""Stand-ins for pycloudlib's exception classes, of the same names and
arguments, for when pycloudlib is not installed (see :mod:`vmw.errors`)."""

from __future__ import annotations

from collections.abc import Sequence


class PycloudlibException(Exception):
    """The root of pycloudlib's exceptions."""


class PycloudlibError(PycloudlibException):
    """A failure of the library."""


class CloudSetupError(PycloudlibException):
    """The cloud cannot be used as configured."""


class CloudError(PycloudlibException):
    """The cloud failed an operation."""


class PycloudlibTimeoutError(PycloudlibException):
    """A wait ran out of time."""


class ResourceNotFoundError(PycloudlibException):
    """Something asked for does not exist."""


class ImageNotFoundError(ResourceNotFoundError):
    """The image asked for does not exist."""


class InstanceNotFoundError(ResourceNotFoundError):
    """The instance asked for does not exist."""


class CleanupError(PycloudlibException):
    """Cleaning up failed; ``exceptions`` holds every failure."""

    def __init__(self, exceptions: Sequence[BaseException]) -> None:
        super().__init__(exceptions)
        self.exceptions = list(exceptions)

    def __str__(self) -> str:
        return "cleanup failed:\n" + "\n".join(f"  - {e}" for e in self.exceptions)


class InvalidTagNameError(PycloudlibException):
    """The tag breaks the naming rules (``rules_failed`` lists each)."""

    def __init__(self, tag: str, rules_failed: list[str]) -> None:
        super().__init__(tag, rules_failed)
        self.tag = tag
        self.rules_failed = rules_failed

    def __str__(self) -> str:
        return f"invalid tag {self.tag!r}: " + "; ".join(self.rules_failed)
