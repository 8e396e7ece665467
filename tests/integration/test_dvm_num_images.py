"""Several images per job end to end: one result, one URL per line, one imeta per image."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from dvm_harness import (  # noqa: F401 - fixtures
    Customer,
    Dvm,
    tiny_engine_fixture,
    tiny_model_folder_fixture,
)
from PIL import Image

from nostr_imagegen.service.client import build_request

pytestmark = pytest.mark.integration


async def test_three_images_come_back_as_three_links_with_their_imeta(
    relay_url: str, tmp_path: Path, tiny_engine: Any
) -> None:
    async with Dvm([relay_url], tmp_path, tiny_engine) as dvm, Customer([relay_url]) as customer:
        request = build_request(
            customer.keys,
            prompt="three ostriches",
            params=(("num_images", "3"), ("seed", "21")),
        )
        outcome = await customer.submit(request, provider=dvm.keys.public_key)
        assert outcome.error is None
        assert outcome.result is not None
        assert outcome.parsed is not None
        assert outcome.result.content.split("\n") == list(outcome.urls)
        assert len(outcome.urls) == 3
        links = outcome.parsed.images
        assert [link.url for link in links] == list(outcome.urls)
        digests = set()
        async with httpx.AsyncClient() as client:
            for link in links:
                data = (await client.get(link.url)).content
                assert hashlib.sha256(data).hexdigest() == link.sha256
                picture = Image.open(io.BytesIO(data))
                assert (picture.width, picture.height) == (link.width, link.height) == (64, 64)
                digests.add(link.sha256)
        assert len(digests) == 3  # three pictures (seeds 21, 22, 23), not one three times
