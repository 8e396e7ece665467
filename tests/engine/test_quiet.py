"""quiet_libraries: no progress bars or library chatter on stderr once it was called."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from _engine_support import MakeJob

from nostr_imagegen.engine.quiet import quiet_libraries
from nostr_imagegen.engine_config import EngineConfig

pytestmark = pytest.mark.engine

BAR_MARKS = ("it/s]", "%|")


@pytest.fixture
def loud_libraries() -> Iterator[tuple[Any, Any, Any]]:
    """The libraries as a fresh process has them (bars on, warnings logged), put back as
    they were afterwards: their switches are process-wide."""
    diffusers = importlib.import_module("diffusers.utils.logging")
    transformers = importlib.import_module("transformers.utils.logging")
    hub = importlib.import_module("huggingface_hub.utils")
    before = (
        diffusers.is_progress_bar_enabled(),
        transformers.is_progress_bar_enabled(),
        hub.are_progress_bars_disabled(),
        diffusers.get_verbosity(),
        transformers.get_verbosity(),
        hub.logging.get_verbosity(),
    )
    for library in (diffusers, transformers):
        library.enable_progress_bar()
        library.set_verbosity_warning()
    hub.enable_progress_bars()
    hub.logging.set_verbosity_warning()
    yield diffusers, transformers, hub
    for library, enabled in ((diffusers, before[0]), (transformers, before[1])):
        (library.enable_progress_bar if enabled else library.disable_progress_bar)()
    (hub.disable_progress_bars if before[2] else hub.enable_progress_bars)()
    diffusers.set_verbosity(before[3])
    transformers.set_verbosity(before[4])
    hub.logging.set_verbosity(before[5])


def test_after_quieting_a_generation_prints_nothing(
    loud_libraries: tuple[Any, Any, Any],
    tiny_config: EngineConfig,
    make_job: MakeJob,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from nostr_imagegen.engine.generate import Engine

    capfd.readouterr()
    Engine(tiny_config).generate(make_job())  # loads the model, then generates
    loud = capfd.readouterr().err
    assert "Loading pipeline components" in loud  # what an embedding program would see
    assert any(mark in loud for mark in BAR_MARKS)

    quiet_libraries()
    Engine(tiny_config).generate(make_job(("model", "tiny-xl")))
    assert capfd.readouterr().err == ""


def test_keep_warnings_turns_off_only_the_bars(loud_libraries: tuple[Any, Any, Any]) -> None:
    diffusers, transformers, hub = loud_libraries
    warning = diffusers.WARNING
    quiet_libraries(keep_warnings=True)
    assert not diffusers.is_progress_bar_enabled()
    assert not transformers.is_progress_bar_enabled()
    assert hub.are_progress_bars_disabled()
    assert diffusers.get_verbosity() == transformers.get_verbosity() == warning
    assert hub.logging.get_verbosity() == warning
    quiet_libraries()
    assert diffusers.get_verbosity() == transformers.get_verbosity() == diffusers.ERROR
    assert hub.logging.get_verbosity() == diffusers.ERROR
