"""Where an installed package's data files are, found without importing the package.

The browser page (``tdmi.client``'s ``web`` folder) and the API pages (``fastapi_offline``'s
``static`` folder) are served from files other distributions ship; ``find_spec`` locates their
folder as the import system would (a wheel, an editable install or a checkout alike) while
running none of their code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_folder"]


def package_folder(package: str, subfolder: str, missing: str) -> Path:
    """``subfolder`` of ``package``'s folder; ``missing`` is the error when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(missing)
    return Path(spec.submodule_search_locations[0]) / subfolder
