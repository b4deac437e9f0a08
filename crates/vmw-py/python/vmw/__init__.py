"""vmw for Python: pycloudlib's VMware API on vmw's engine.

Switching from pycloudlib is one import::

    from vmw import VMWare

    with VMWare(tag="ci") as cloud:
        image = cloud.released_image("noble")
        with cloud.launch(image, user_data="#cloud-config\\n") as instance:
            print(instance.execute("cloud-init status --long"))

The engine is vmw's (Rust): VMs are addressed by their exact inventory path,
nothing without vmw's marker is destroyed, a failed or interrupted launch
removes what it made, and every call releases the GIL.
"""

from vmw._native import VMWare, VMWareInstance, __version__
from vmw._result import Result
from vmw.errors import (
    CleanupError,
    CloudError,
    CloudSetupError,
    ImageNotFoundError,
    InstanceNotFoundError,
    InvalidOptionError,
    InvalidTagNameError,
    LaunchError,
    NotSupportedError,
    PycloudlibError,
    PycloudlibException,
    PycloudlibTimeoutError,
    RefusedError,
    ResourceNotFoundError,
    SSHError,
    UnknownReleaseError,
    VmwCloudError,
    VmwError,
    WaitTimeoutError,
)

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
    "Result",
    "SSHError",
    "UnknownReleaseError",
    "VMWare",
    "VMWareInstance",
    "VmwCloudError",
    "VmwError",
    "WaitTimeoutError",
    "__version__",
]
