"""A pytest plugin that gives cloud-init's integration tests a ``vmware`` platform.

cloud-init's framework (``tests/integration_tests`` of its source) picks the
cloud by the ``CLOUD_INIT_PLATFORM`` setting from the ``platforms`` table of
its ``conftest.py``; VMware is not in it. Loaded with
``-p vmw_cloud_init_platform`` from the root of cloud-init's source tree,
this plugin adds ``vmware`` to that table, backed by ``vmw.VMWare``, before
the tests are collected, so that their files run unchanged:

- the image is the template ``daily_image`` finds for the release of
  ``CLOUD_INIT_OS_IMAGE`` (``::debian::trixie::13``: an empty image id, the
  OS, the series, the version), or the image id given first;
- the default user of each OS the framework does not know is named by
  ``VMW_CLOUD_INIT_USERS`` (``debian=debian``, the default);
- every VM has a serial console log (``launch(console=True)``), which
  ``console_log()`` reads;
- under pytest-xdist, each worker prepares the session's image (the
  framework's ``INCLUDE_PROFILE`` or ``INCLUDE_COVERAGE``) and the
  controller, which runs no test, prepares nothing.

vmw's own configuration (``PYCLOUDLIB_CONFIG``, ``VMW_GOVC``, ...) says
which vCenter, folder and templates are used.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import vmw

#: The tag of the VMs the platform launches.
TAG = "ci-integration"


def _users() -> dict[str, str]:
    """``VMW_CLOUD_INIT_USERS`` (``os=user,os=user``) as a dict."""
    users = {"debian": "debian"}
    for pair in os.environ.get("VMW_CLOUD_INIT_USERS", "").split(","):
        os_name, sep, user = pair.partition("=")
        if sep and os_name.strip() and user.strip():
            users[os_name.strip()] = user.strip()
    return users


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands the tests to pytest-xdist workers."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``vmware`` platform in cloud-init's framework."""
    # cloud-init's test modules, importable from the root of its source.
    from tests.integration_tests import (  # type: ignore[import-not-found,unused-ignore]
        clouds,
        conftest,
        integration_settings,
    )

    if _xdist_controller(config):
        # Each worker prepares the session's image for the tests it runs;
        # the controller runs none, so it prepares nothing.
        integration_settings.INCLUDE_PROFILE = False
        integration_settings.INCLUDE_COVERAGE = False

    class VmwareCloud(clouds.IntegrationCloud):  # type: ignore[misc,unused-ignore]
        """cloud-init's integration cloud on vmw's ``VMWare``."""

        datasource = "vmware"

        def _get_cloud_instance(self) -> Any:
            return vmw.VMWare(tag=TAG)

        def _perform_launch(self, *, launch_kwargs: dict[str, Any], **kwargs: Any) -> Any:
            # Every VM gets a serial console log, which the framework reads
            # (console_log) as it does on the clouds that keep one.
            launch_kwargs.setdefault("console", True)
            return super()._perform_launch(launch_kwargs=launch_kwargs, **kwargs)

    conftest.platforms["vmware"] = VmwareCloud
    for os_name, user in _users().items():
        clouds.DISTRO_TO_USERNAME.setdefault(os_name, user)
