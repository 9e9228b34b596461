"""Finding the programs some tests drive (node, npm, chromium, nginx): skip locally, fail in CI.

`make test` installs them when they are missing. A developer's machine without one skips the tests
that need it, with the reason; under `CI` a missing program is a failure, never a silent skip.
"""

import os
import shutil
from pathlib import Path

import pytest

_SBIN = ("/usr/sbin", "/sbin")


def require(name: str, package: str | None = None) -> str:
    """The program's path, or skip (fail under CI) saying which Debian package provides it."""
    found = shutil.which(name) or _in_sbin(name)
    if found:
        return found
    reason = f"{name} is not installed (apt-get install {package or name}; `make test` does it)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
    pytest.skip(reason)


def _in_sbin(name: str) -> str | None:
    for directory in _SBIN:
        path = Path(directory) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None
