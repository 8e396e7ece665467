"""Import spandrel without torchvision.

``import spandrel`` loads every architecture it knows; two of them (LaMa and RestoreFormer)
import ``torchvision.transforms.functional`` at module level, for ``rotate``, ``normalize`` and
``InterpolationMode``. The Real-ESRGAN family we load never calls them, and torchvision cannot
be installed on a CPU machine without dragging in a CUDA build of torch. So when torchvision is
missing, spandrel is imported behind a stand-in for exactly those three names, which raises if
anything ever calls it. The stand-in is removed from ``sys.modules`` right after the import, so
no other library sees a fake torchvision; only those two unused architectures keep a reference.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["import_spandrel"]


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed; this spandrel architecture needs it")

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear")  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    return {module.__name__: module for module in (root, transforms, functional)}


def import_spandrel() -> Any:
    """The spandrel module; raises ``ImportError`` when spandrel itself is not installed."""
    try:
        import spandrel
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "torchvision":
            raise
    else:
        return spandrel
    stand_in = _torchvision_stand_in()
    saved = {name: sys.modules.get(name) for name in stand_in}
    for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
        del sys.modules[name]  # the half-imported package from the failed attempt
    sys.modules.update(stand_in)
    try:
        import spandrel
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return spandrel
