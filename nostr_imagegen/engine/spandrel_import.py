"""Import spandrel on a machine without torchvision, without lying to anyone else about it.

Why: ``import spandrel`` imports every architecture it knows, and two of them (LaMa and
RestoreFormer) import ``torchvision.transforms.functional`` at module level, for ``rotate``,
``normalize`` and ``InterpolationMode``. The Real-ESRGAN family this library loads (RRDBNet,
SRVGGNetCompact, ...) never calls them, and on PyPI torchvision depends on the default CUDA
build of torch: installing it on a CPU machine downloads gigabytes and may replace the
operator's torch. So spandrel is installed with ``--no-deps`` and imported here:

1. ``import spandrel``: with torchvision installed (or spandrel already imported), that is all.
2. Only when that fails because no module named ``torchvision`` exists, spandrel is imported
   again inside ``missing_torchvision_stand_in()``: a stand-in module offering exactly those
   three names (``rotate`` and ``normalize`` raise ``RuntimeError`` if anything calls them) is
   put into ``sys.modules`` for the duration of that one import, logged at debug level, and
   taken out again right after, the previous entries restored. Afterwards no other library
   sees a torchvision that is not installed; only the two unused spandrel architectures keep
   a reference to the stand-in.
3. A real torchvision is never shadowed: when one is installed or already imported (even a
   broken one), the stand-in is refused and spandrel's import error is raised unchanged.

    spandrel = import_spandrel()             # what SpandrelUpscaler calls
    with missing_torchvision_stand_in():     # the step in (2), for an import of your own
        import spandrel
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["STAND_IN_MODULES", "import_spandrel", "missing_torchvision_stand_in"]

logger = logging.getLogger(__name__)

#: The module names the stand-in occupies while spandrel is imported.
STAND_IN_MODULES: Final = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)
#: What the stand-in's ``torchvision.transforms.functional`` offers.
_STAND_IN_NAMES: Final = ("InterpolationMode", "rotate", "normalize")


def import_spandrel() -> types.ModuleType:
    """The spandrel module, imported as described in the module docstring.

    Raises ``ImportError`` when spandrel itself is not installed, when it fails to import
    for another reason, or when torchvision is present but spandrel still cannot import it.
    """
    try:
        return importlib.import_module("spandrel")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "torchvision" or _torchvision_present():
            raise
    # The half-imported package from the failed attempt would be found again as it is.
    _forget_spandrel()
    with missing_torchvision_stand_in():
        try:
            return importlib.import_module("spandrel")
        except BaseException:
            _forget_spandrel()  # no half-imported package holding on to the stand-in
            raise


@contextmanager
def missing_torchvision_stand_in() -> Iterator[None]:
    """Put a stand-in for the three torchvision names spandrel's unused architectures import
    into ``sys.modules`` for the ``with`` block, and take it out afterwards (whatever the
    block raised), restoring what was there.

    Raises ``RuntimeError`` instead when torchvision is installed or already in
    ``sys.modules``: a real torchvision (or one another library put there) is never shadowed.
    """
    if _torchvision_present():
        raise RuntimeError("torchvision is installed or imported: refusing to shadow it")
    stand_in = _stand_in_modules()
    saved = {name: sys.modules.get(name) for name in stand_in}
    logger.debug(
        "torchvision is not installed: importing behind a stand-in for %s",
        ", ".join(f"torchvision.transforms.functional.{name}" for name in _STAND_IN_NAMES),
    )
    sys.modules.update(stand_in)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
        logger.debug("torchvision stand-in removed from sys.modules")


def _forget_spandrel() -> None:
    for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
        del sys.modules[name]


def _torchvision_present() -> bool:
    """A torchvision is imported (``sys.modules``) or importable (installed)."""
    if any(name in sys.modules for name in STAND_IN_MODULES):
        return True
    return importlib.util.find_spec("torchvision") is not None


def _stand_in_modules() -> dict[str, types.ModuleType]:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed; this spandrel architecture needs it")

    root = types.ModuleType("torchvision", "Stand-in (nostr_imagegen.engine.spandrel_import).")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear")  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    return {module.__name__: module for module in (root, transforms, functional)}
