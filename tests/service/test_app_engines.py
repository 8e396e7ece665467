"""What ``serve`` runs jobs on, from ``[engine]``: local engines per device, or Ray slots."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.service.app import _engines
from nostr_imagegen.service.config import load_service_config

BASE = """
[models.tiny]
source = "./models/tiny"
family = "sd15"
steps = 2

[service]
relays = ["ws://127.0.0.1:7000"]
ledger = "ledger.sqlite3"

[identity]
secret_key_file = "dvm.key"

[[storage]]
type = "local"
folder = "images"
base_url = "https://images.example.org"
"""


def _config(tmp_path: Path, engine_section: str) -> Any:
    (tmp_path / "models" / "tiny").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "dvm.toml"
    path.write_text(BASE + engine_section, encoding="utf-8")
    return load_service_config(path)


async def test_ray_backend_without_ray_is_a_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nostr_imagegen.service.ray", None)  # not importable
    config = _config(tmp_path, '[engine]\nbackend = "ray"\n')
    with pytest.raises(ConfigError, match='backend = "ray" needs Ray'):
        await _engines(config, None)


async def test_ray_backend_plans_with_a_planner_and_runs_on_the_ray_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Any] = []

    def build_ray_slots(config: Any, encode: Any) -> list[object]:
        built.append((config.engine.ray.workers, encode.default_output))
        return [object(), object()]

    fake = types.ModuleType("nostr_imagegen.service.ray")
    fake.build_ray_slots = build_ray_slots  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nostr_imagegen.service.ray", fake)
    config = _config(tmp_path, '[engine]\nbackend = "ray"\n[engine.ray]\nworkers = 2\n')
    planner, engines, slots = await _engines(config, None)
    from nostr_imagegen.engine.planner import Planner

    assert isinstance(planner, Planner)
    assert [m.name for m in planner.offered().models] == ["tiny"]
    assert engines == []
    assert len(slots) == 2
    assert built == [(2, "image/png")]


@pytest.mark.engine
async def test_local_devices_give_one_warm_engine_each(tmp_path: Path) -> None:
    import torch

    from nostr_imagegen.testing import build_tiny_pipeline

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = _config(tmp_path, '[engine]\ndevices = ["cpu", "cpu"]\n')
        build_tiny_pipeline(tmp_path / "models" / "tiny")
        planner, engines, slots = await _engines(config, None)
        assert len(engines) == 2
        assert engines[0] is not engines[1]
        assert planner is engines[0]
        assert slots == []
    finally:
        torch.set_num_threads(before)


async def test_an_engine_given_to_serve_is_used_as_it_is(tmp_path: Path) -> None:
    from _runner_fakes import FakeEngine

    engine = FakeEngine()
    config = _config(tmp_path, '[engine]\ndevices = ["cuda:0", "cuda:1"]\n')
    planner, engines, slots = await _engines(config, engine)
    assert (planner, engines, slots) == (engine, [engine], [])
