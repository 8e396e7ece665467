"""Engine fixtures: tiny random-weight pipelines built once per session, jobs from real events.

``tiny_models`` builds an SD 1.5 and an SDXL pipeline, three LoRAs and a single-file
checkpoint into one temporary folder (about a second), all through the code in
``nostr_imagegen.testing``; tests load them back with the real diffusers loaders.
torch is imported only by the fixtures that need it, so the pure tests in this folder
(configuration, registry) stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from _engine_support import CUSTOMER, PROMPT, MakeJob, TinyModels, tiny_config_data

from nostr_imagegen.engine_config import EngineConfig
from nostr_imagegen.imagejob.model import ImageJob
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.event import UnsignedEvent, sign_event


@pytest.fixture(scope="session")
def torch_one_thread() -> Iterator[None]:
    """One intra-op thread: faster on the shared 2-core machine, and reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, torch_one_thread: None) -> TinyModels:
    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import (
        build_tiny_lora,
        build_tiny_pipeline,
        save_single_file_checkpoint,
    )

    root = tmp_path_factory.mktemp("tiny-models")
    sd15 = build_tiny_pipeline(root / "sd15", ModelFamily.SD15, seed=0)
    sdxl = build_tiny_pipeline(root / "sdxl", ModelFamily.SDXL, seed=0)
    return TinyModels(
        sd15=sd15,
        sdxl=sdxl,
        lora_a=build_tiny_lora(root / "lora-a", sd15, seed=1),
        lora_b=build_tiny_lora(root / "lora-b", sd15, seed=2),
        lora_xl=build_tiny_lora(root / "lora-xl", sdxl, seed=3),
        single_file=save_single_file_checkpoint(sd15, root / "sd15-single.safetensors"),
    )


@pytest.fixture(scope="session")
def tiny_config(tiny_models: TinyModels) -> EngineConfig:
    return EngineConfig.from_mapping(tiny_config_data(tiny_models))


@pytest.fixture
def make_job() -> MakeJob:
    """``make_job(("size", "64x64"), ("seed", "7"), prompt=..., image_url=..., output=...)``:
    a job parsed by the real parser from a request signed by a customer key."""

    def make(
        *params: Sequence[str],
        prompt: str = PROMPT,
        image_url: str | None = None,
        output: str | None = None,
    ) -> ImageJob:
        tags: list[tuple[str, ...]] = [("i", prompt, "text")]
        if image_url is not None:
            tags.append(("i", image_url, "url"))
        tags.extend(("param", *param) for param in params)
        if output is not None:
            tags.append(("output", output))
        event = sign_event(UnsignedEvent(kind=5100, tags=tuple(tags)), CUSTOMER)
        return parse_image_job(event)

    return make
