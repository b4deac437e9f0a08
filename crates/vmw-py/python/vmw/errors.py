"""The exceptions vmw raises, in pycloudlib's hierarchy.

When pycloudlib is installed, its own classes are the bases, so that code
written for pycloudlib (``except PycloudlibTimeoutError``) catches vmw's
errors unchanged; without it, classes of the same names stand in. Every
exception vmw raises is also a :class:`VmwError`, with the ``hints`` that
would fix it and its ``category``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmw._bases import (
        CleanupError,
        CloudError,
        CloudSetupError,
        ImageNotFoundError,
        InstanceNotFoundError,
        InvalidTagNameError,
        PycloudlibError,
        PycloudlibException,
        PycloudlibTimeoutError,
        ResourceNotFoundError,
    )
else:
    try:  # pycloudlib's classes, when it is there.
        from pycloudlib.errors import (
            CleanupError,
            CloudError,
            CloudSetupError,
            ImageNotFoundError,
            InstanceNotFoundError,
            InvalidTagNameError,
            PycloudlibError,
            PycloudlibException,
            PycloudlibTimeoutError,
            ResourceNotFoundError,
        )
    except Exception:  # noqa: BLE001 - any failure to import means "not there"
        from vmw._bases import (
            CleanupError,
            CloudError,
            CloudSetupError,
            ImageNotFoundError,
            InstanceNotFoundError,
            InvalidTagNameError,
            PycloudlibError,
            PycloudlibException,
            PycloudlibTimeoutError,
            ResourceNotFoundError,
        )


class VmwError(PycloudlibException):
    """An error of vmw: its message states the fact; ``hints`` says what
    would fix it; ``category`` is ``input``, ``refused``, ``cancelled`` or
    ``failed``."""

    hints: list[str]
    category: str = "failed"

    def __init__(self, message: str = "") -> None:
        # Not the bases' own constructors: pycloudlib's take other
        # arguments (a resource type, a tag); the message is the fact.
        Exception.__init__(self, message)
        self.message = message
        self.hints = []

    def __str__(self) -> str:
        return self.message


class InvalidOptionError(VmwError, ValueError):
    """A value given to vmw cannot be used; nothing was touched."""

    category = "input"


class UnknownReleaseError(VmwError, ImageNotFoundError, ValueError):
    """No ``TEMPLATE-cloud-init-<release>`` in the folder; the message lists
    those there are."""

    category = "input"


class RefusedError(VmwError, ValueError):
    """vmw refused to touch a VM that is not its own, or a template."""

    category = "refused"


class NotSupportedError(VmwError, NotImplementedError):
    """Not possible on vSphere (or not on this VM)."""


class WaitTimeoutError(VmwError, PycloudlibTimeoutError):
    """A wait ran out of time; a guest that never answered shows the end of
    its console log, when it has one."""


class SSHError(VmwError, OSError):
    """Reaching the guest over SSH failed."""


class LaunchError(VmwError, CloudError):
    """A launch or snapshot failed at a step; what it made was removed,
    unless the message says otherwise."""


class VmwCloudError(VmwError, CloudError):
    """govc or vCenter failed an operation."""


__all__ = [
    "CleanupError",
    "CloudError",
    "CloudSetupError",
    "ImageNotFoundError",
    "InstanceNotFoundError",
    "InvalidOptionError",
    "InvalidTagNameError",
    "LaunchError",
    "NotSupportedError",
    "PycloudlibError",
    "PycloudlibException",
    "PycloudlibTimeoutError",
    "RefusedError",
    "ResourceNotFoundError",
    "SSHError",
    "UnknownReleaseError",
    "VmwCloudError",
    "VmwError",
    "WaitTimeoutError",
]
