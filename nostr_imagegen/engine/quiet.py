"""Silence the model libraries' console output when the engine is embedded in a program.

Loading a pipeline makes diffusers, transformers and huggingface_hub write to stderr:
progress bars (``Loading pipeline components...: 100%|...|``, ``Loading weights``,
``Writing model shards``, downloads) and log lines (``[transformers] `CLIPImageProcessor`
requires torchvision (not installed); falling back to ...``, load reports). A service's log
or a command's stderr is no place for them::

    from nostr_imagegen.engine.quiet import quiet_libraries

    quiet_libraries()                     # no bars; only the libraries' errors are logged
    quiet_libraries(keep_warnings=True)   # no bars; their warnings still logged

``nostr-imagegen run`` and ``demo`` call it (``-v`` keeps the warnings). The denoising bar
of each generation is already off: the engine turns it off on every pipeline it loads.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Final

__all__ = ["QUIETED_LIBRARIES", "quiet_libraries"]

logger = logging.getLogger(__name__)

#: The libraries ``quiet_libraries`` quiets, each through its own switches.
QUIETED_LIBRARIES: Final = ("diffusers", "transformers", "huggingface_hub")


def quiet_libraries(*, keep_warnings: bool = False) -> None:
    """Turn off the progress bars of diffusers, transformers and huggingface_hub and, unless
    ``keep_warnings``, lower their loggers to errors.

    These are the libraries' own process-wide switches (``disable_progress_bar``,
    ``disable_progress_bars``, ``set_verbosity_error``), so the effect lasts for the whole
    process and reaches every pipeline, the engine's and any other. A library that is not
    installed is skipped. Imports those that are (diffusers takes seconds): call it once, at
    start-up. Logging of ``nostr_imagegen`` itself is left as configured.

    A pipeline your own code loads still draws its denoising bar unless told
    ``pipeline.set_progress_bar_config(disable=True)``: diffusers keeps that switch per
    pipeline.
    """
    diffusers = _installed("diffusers.utils.logging")
    transformers = _installed("transformers.utils.logging")
    hub = _installed("huggingface_hub.utils")
    loggers = []
    for library in (diffusers, transformers):
        if library is not None:
            library.disable_progress_bar()
            loggers.append(library)
    if hub is not None:
        hub.disable_progress_bars()
        loggers.append(hub.logging)
    if not keep_warnings:
        for library in loggers:
            library.set_verbosity_error()
    logger.debug("progress bars off%s", "" if keep_warnings else ", library warnings off")


def _installed(name: str) -> Any:
    """The module ``name``, or None when its library is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name.split(".")[0]:
            return None
        raise
