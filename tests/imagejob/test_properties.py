"""Properties over hostile input: parsing fails only with our errors, and tag views round-trip.

Generated sizes stay moderate (tens of tags, short strings) so the suite stays quick; the
limits that make huge inputs cheap are tested directly in test_request.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from _request_support import CUSTOMER, PROVIDER, encrypted_request, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nostr_imagegen.errors import JobRejected, NostrImagegenError
from nostr_imagegen.imagejob.dimensions import ModelFamily, job_dimensions
from nostr_imagegen.imagejob.model import ImageJob, InputType, Ratio
from nostr_imagegen.imagejob.request import JobLimits, parse_image_job
from nostr_imagegen.imagejob.tags import (
    BidTag,
    EncryptedTag,
    InputTag,
    OutputTag,
    ParamTag,
    ProviderTag,
    RelaysTag,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values that reach deep into the parser, mixed with arbitrary text.
INTERESTING = [
    "", " ", "text", "url", "event", "job", "4:3", "16:9", "16", "9", "10", "5:4", "512x512",
    "512", "0x0", "2", "2x", "1.5", "0", "-1", "1e9", "nan", "inf", "0.8", "99999999999999999999",
    "sdxl-turbo", "../x", "a/b", "image/png", "png", "10000", "wss://relay.example",
    "https://example.com/a.png", "http://[::1", "file:///etc/passwd", PROVIDER.public_key,
    CUSTOMER.public_key, "ab" * 32, "AB" * 32,
]  # fmt: skip
PARAM_KEYS = [
    "model", "lora", "lora_weight", "ratio", "size", "negative_prompt", "upscale", "seed",
    "steps", "guidance_scale", "strength", "sampler", "",
]  # fmt: skip
TAG_NAMES = ["i", "param", "output", "bid", "relays", "p", "encrypted", "t", "alt", ""]

values = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(str),
)


def _param(parts: tuple[str, list[str]]) -> list[str]:
    return ["param", parts[0], *parts[1]]


def _named(parts: tuple[str, list[str]]) -> list[str]:
    return [parts[0], *parts[1]]


tags = st.one_of(
    st.tuples(st.sampled_from(PARAM_KEYS) | st.text(max_size=10), st.lists(values, max_size=4)).map(
        _param
    ),
    st.tuples(st.sampled_from(TAG_NAMES) | st.text(max_size=10), st.lists(values, max_size=5)).map(
        _named
    ),
    st.lists(values, max_size=4).map(lambda rest: ["i", "a prompt", "text", *rest][:5]),
)
tag_lists = st.lists(tags, max_size=20)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


def _check_job(job: ImageJob) -> None:
    """What every successfully parsed job promises, whatever the request looked like."""
    assert job.prompt.strip()
    assert len(job.prompt) <= JobLimits().max_prompt_chars
    assert job.image_url is None or job.image_url.startswith(("http://", "https://"))
    assert job.size is None or all(1 <= side <= 16384 for side in job.size)
    assert job.upscale is None or 1 <= job.upscale <= 8
    for family in ModelFamily:
        try:
            dims = job_dimensions(job, family)
        except JobRejected:
            continue
        assert dims.width % family.multiple == 0
        assert dims.height % family.multiple == 0


def _parse_or_refuse(event: Any, **kwargs: Any) -> None:
    try:
        job = parse_image_job(event, **kwargs)
    except NostrImagegenError:
        return  # refusing is fine; any other exception fails the test
    _check_job(job)


@SETTINGS
@given(tag_lists)
def test_arbitrary_tags_parse_or_fail_with_our_errors(tag_list: list[list[str]]) -> None:
    _parse_or_refuse(request(*tag_list), provider=PROVIDER)
    _parse_or_refuse(request(*tag_list))


@SETTINGS
@given(tag_lists)
def test_arbitrary_tags_after_a_prompt(tag_list: list[list[str]]) -> None:
    # A leading valid prompt gets the parser past the "no prompt" refusal into the params.
    event = request(["i", "a red fox", "text"], *tag_list)
    _parse_or_refuse(event, provider=PROVIDER, input_resolver=None)


@SETTINGS
@given(tag_lists, st.sampled_from(list(EncryptionScheme)))
def test_arbitrary_encrypted_tags_parse_or_fail_with_our_errors(
    tag_list: list[list[str]], scheme: EncryptionScheme
) -> None:
    _parse_or_refuse(encrypted_request(tag_list, scheme=scheme), provider=PROVIDER)


@SETTINGS
@given(json_values)
def test_arbitrary_json_as_encrypted_payload_fails_only_with_our_errors(value: object) -> None:
    _parse_or_refuse(encrypted_request(json.dumps(value)), provider=PROVIDER)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_encrypted_content_fails_only_with_our_errors(content: str) -> None:
    event = request(["p", PROVIDER.public_key], ["encrypted"], content=content)
    _parse_or_refuse(event, provider=PROVIDER)


# --- every typed tag round-trips ---------------------------------------------------------------

Parser = Callable[[Sequence[str]], Any]
VIEWS: list[Parser] = [
    InputTag.parse,
    ParamTag.parse,
    OutputTag.parse,
    BidTag.parse,
    RelaysTag.parse,
    ProviderTag.parse,
    EncryptedTag.parse,
]


@SETTINGS
@given(tags)
def test_any_tag_a_view_accepts_round_trips(tag: list[str]) -> None:
    for parse in VIEWS:
        try:
            view = parse(tag)
        except JobRejected as exc:
            rejected_tag = exc.tag
        else:
            assert view.to_tag() == tuple(tag)
            continue
        assert rejected_tag is not None  # a rejection always quotes the tag


uints = st.integers(min_value=0, max_value=21 * 10**17).map(str)
relay_urls = st.builds(
    "{}://{}.example{}".format,
    st.sampled_from(["ws", "wss"]),
    st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
    st.sampled_from(["", "/", ":7777", "/path"]),
)
valid_tags = st.one_of(
    st.builds(
        lambda data, kind, extra: ["i", data, kind, *extra],
        st.text(max_size=30),
        st.sampled_from([t.value for t in InputType]),
        st.lists(st.text(max_size=10), max_size=2),
    ),
    st.builds(
        lambda key, vals: ["param", key, *vals],
        st.text(max_size=10),
        st.lists(
            st.text(max_size=10) | st.sampled_from([r.value for r in Ratio]), min_size=1, max_size=3
        ),
    ),
    st.sampled_from(["image/png", "image/jpeg", "image/webp"]).map(lambda m: ["output", m]),
    uints.map(lambda a: ["bid", a]),
    st.tuples(uints, uints).map(lambda ab: ["bid", *sorted(ab, key=int)]),
    st.lists(relay_urls, min_size=1, max_size=4).map(lambda urls: ["relays", *urls]),
    st.builds(
        lambda key, relay: ["p", key, *relay],
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        st.lists(relay_urls, max_size=1),
    ),
    st.just(["encrypted"]),
)
PARSERS: dict[str, Parser] = {
    "i": InputTag.parse,
    "param": ParamTag.parse,
    "output": OutputTag.parse,
    "bid": BidTag.parse,
    "relays": RelaysTag.parse,
    "p": ProviderTag.parse,
    "encrypted": EncryptedTag.parse,
}


@SETTINGS
@given(valid_tags)
def test_every_valid_tag_round_trips(tag: list[str]) -> None:
    view = PARSERS[tag[0]](tag)
    assert list(view.to_tag()) == tag
