"""The published examples parse into what they mean.

Sources: the two examples of the kind 5100 page (data-vending-machines, kinds/5100.md, as in
/work/shared/specs/dvm/5100.md) and the same two in the original design text: the first
version of that page (October 2023), which showed ``"kind": 5050`` and documented an
``upscale`` factor param where the current page has ``size``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _request_support import CUSTOMER

from nostr_imagegen.errors import UnsupportedKind
from nostr_imagegen.imagejob.model import ImageJob, Ratio
from nostr_imagegen.imagejob.request import parse_image_job
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event

IMAGE_URL = (
    "https://image.nostr.build/cbfedf544d1ab82d26332bf70c1ea55b8f275ae59a04c3dac175d9cae536725e.jpg"
)

EXAMPLE_1 = """
{
    "content": "",
    "kind": 5100,
    "tags": [
        [ "i", "A purple ostrich watching the sunset", "text" ],
        [ "param", "ratio", "4:3"],
        [ "param",  "negative_prompt", "broken hands, bad quality"]
    ]
}
"""

# As published, Example 2 is not valid JSON: the comma after the second `i` tag is missing.
# It is added here (the only change). Note the url input comes before the text input.
EXAMPLE_2 = """
{
    "content": "",
    "kind": 5100,
    "tags": [
        [ "i", "https://image.nostr.build/cbfedf544d1ab82d26332bf70c1ea55b8f275ae59a04c3dac175d9cae536725e.jpg", "url" ],
        [ "i", "In style of Pablo Picasso", "text" ],
        [ "param", "size", "512x512" ]
    ]
}
"""  # noqa: E501 - kept as published

# The original design text: the same examples with the kind first published by mistake
# (5050 is text generation); its Example 2 had no `size` param (that came in November 2023).
DESIGN_EXAMPLE_1 = EXAMPLE_1.replace('"kind": 5100', '"kind": 5050')
DESIGN_EXAMPLE_2 = """
{
    "content": "",
    "kind": 5050,
    "tags": [
        [ "i", "https://image.nostr.build/cbfedf544d1ab82d26332bf70c1ea55b8f275ae59a04c3dac175d9cae536725e.jpg", "url" ],
        [ "i", "In style of Pablo Picasso", "text" ]
    ]
}
"""  # noqa: E501 - kept as published


def signed(example: str) -> Event:
    """Sign the example as a customer would, then read it back as a relay peer would."""
    document: dict[str, Any] = json.loads(example)
    template = UnsignedEvent(
        kind=document["kind"],
        tags=tuple(tuple(tag) for tag in document["tags"]),
        content=document["content"],
    )
    return parse_event(sign_event(template, CUSTOMER).to_json())


def check_example_1(job: ImageJob) -> None:
    assert job.prompt == "A purple ostrich watching the sunset"
    assert job.image_url is None
    assert job.ratio is Ratio.LANDSCAPE_4_3
    assert job.size is None
    assert job.negative_prompt == "broken hands, bad quality"


def check_example_2(job: ImageJob, size: tuple[int, int] | None) -> None:
    assert job.prompt == "In style of Pablo Picasso"
    assert job.image_url == IMAGE_URL
    assert job.ratio is None
    assert job.size == size
    assert job.negative_prompt is None


def test_published_example_2_needs_its_missing_comma() -> None:
    broken = EXAMPLE_2.replace('"text" ],', '"text" ]')
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken)


def test_spec_example_1() -> None:
    job = parse_image_job(signed(EXAMPLE_1))
    check_example_1(job)
    assert job.kind == 5100
    assert job.customer == CUSTOMER.public_key


def test_spec_example_2() -> None:
    job = parse_image_job(signed(EXAMPLE_2))
    check_example_2(job, size=(512, 512))


@pytest.mark.parametrize("example", [DESIGN_EXAMPLE_1, DESIGN_EXAMPLE_2])
def test_design_examples_are_skipped_by_default(example: str) -> None:
    with pytest.raises(UnsupportedKind) as info:
        parse_image_job(signed(example))
    assert info.value.kind == 5050


def test_design_example_1_with_kind_5050_accepted() -> None:
    job = parse_image_job(signed(DESIGN_EXAMPLE_1), accepted_kinds=(5100, 5050))
    check_example_1(job)
    assert job.kind == 5050


def test_design_example_2_with_kind_5050_accepted() -> None:
    job = parse_image_job(signed(DESIGN_EXAMPLE_2), accepted_kinds=(5100, 5050))
    check_example_2(job, size=None)
    assert job.kind == 5050


def test_design_text_upscale_param() -> None:
    # The design text's `upscale` ("the upscale factor (1-x)") in a 5050 request.
    example = DESIGN_EXAMPLE_2.replace(
        '"text" ]\n', '"text" ],\n        [ "param", "upscale", "2" ]\n'
    )
    job = parse_image_job(signed(example), accepted_kinds=(5050,))
    check_example_2(job, size=None)
    assert job.upscale == 2.0
