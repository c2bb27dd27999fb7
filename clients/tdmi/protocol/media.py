"""OpenCV and PyAV, imported when a media feature first needs them (the SDK's ``media`` extra).

The SDK's base install (jobs, models, status over HTTP) runs without them, so an application that
only calls the service does not pull in OpenCV and FFmpeg. Video files, cameras, JPEG frames for
live streams and overlay drawing ask for them here, and a missing one names the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MediaUnavailable", "require"]

# the SDK from a package index, or from the repository (where it is until published)
INSTALL_HINT = (
    "pip install 'tdmi-client[media]' (in a checkout of the project: pip install './clients[media]')"
)
_DISTRIBUTIONS = {"cv2": "OpenCV", "av": "PyAV"}


class MediaUnavailable(ImportError):
    """A media feature was used without OpenCV or PyAV installed."""


def require(module: str, feature: str) -> ModuleType:
    """``module`` ("cv2" or "av") imported; ``MediaUnavailable`` naming ``feature`` and the extra
    when it is not installed (an installed one that fails to load raises its own error)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise MediaUnavailable(
            f"{feature} needs {_DISTRIBUTIONS[module]}, which is not installed: {INSTALL_HINT}"
        ) from None
