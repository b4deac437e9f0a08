"""A pytest plugin that makes ``pycloudlib.VMWare`` vmw's ``VMWare``.

Loaded with ``-p vmw_as_pycloudlib`` before pycloudlib's tests are
collected, so that their parameters (evaluated when the test module is
imported) name vmw's class: pycloudlib's tests then drive vmw unchanged.
"""

from __future__ import annotations

import pycloudlib  # type: ignore[import-not-found,unused-ignore]
import pytest
import vmw


def pytest_configure(config: pytest.Config) -> None:
    """Binds ``pycloudlib.VMWare`` to ``vmw.VMWare``."""
    pycloudlib.VMWare = vmw.VMWare
