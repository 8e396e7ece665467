"""parse_image_job: a signed kind 5100 request -> ImageJob, or the right refusal."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest
from _request_support import (
    CUSTOMER,
    IMAGE_URL,
    PROMPT,
    PROVIDER,
    encrypted_request,
    prompt_request,
    request,
)

from nostr_imagegen.errors import (
    ConfigError,
    JobRejected,
    JobSkipped,
    NotForThisProvider,
    UnsupportedKind,
)
from nostr_imagegen.imagejob.model import (
    Bid,
    EncryptionScheme,
    ExtraParams,
    ImageJob,
    InputType,
    JobInput,
    LoraRequest,
    Ratio,
)
from nostr_imagegen.imagejob.request import (
    DEFAULT_JOB_LIMITS,
    JobLimits,
    is_request_kind,
    parse_image_job,
)
from nostr_imagegen.nostr.keys import Keys


def rejected(*tags: tuple[str, ...] | list[str], **kwargs: object) -> JobRejected:
    """Parse a prompt request with ``tags`` and return the JobRejected it must raise."""
    with pytest.raises(JobRejected) as info:
        parse_image_job(prompt_request(*tags), **kwargs)  # type: ignore[arg-type]
    return info.value


# --- the job as a whole ----------------------------------------------------------------------


def test_full_request_fills_every_field() -> None:
    event = request(
        ("i", IMAGE_URL, "url"),
        ("i", PROMPT, "text", "", "prompt"),
        ("param", "model", "sdxl-turbo"),
        ("param", "lora", "pixel-art", "0.8"),
        ("param", "ratio", "4:3"),
        ("param", "size", "1024x768"),
        ("param", "negative_prompt", "broken hands"),
        ("param", "upscale", "2"),
        ("param", "seed", "42"),
        ("param", "steps", "30"),
        ("param", "guidance_scale", "7.5"),
        ("param", "strength", "0.6"),
        ("param", "sampler", "euler_a"),
        ("output", "image/png"),
        ("bid", "10000"),
        ("relays", "wss://relay.example", "ws://127.0.0.1:7777"),
        ("p", PROVIDER.public_key),
        ("t", "art"),
        ("alt", "an image generation request"),
    )
    job = parse_image_job(event, provider=PROVIDER)
    assert job.id == event.id
    assert job.customer == CUSTOMER.public_key
    assert (job.kind, job.created_at) == (5100, event.created_at)
    assert job.prompt == PROMPT
    assert job.image_url == IMAGE_URL
    assert job.model == "sdxl-turbo"
    assert job.loras == (LoraRequest(name="pixel-art", weight=0.8),)
    assert job.ratio is Ratio.LANDSCAPE_4_3
    assert job.size == (1024, 768)
    assert job.negative_prompt == "broken hands"
    assert job.upscale == 2.0
    assert (job.seed, job.steps, job.guidance_scale, job.strength) == (42, 30, 7.5, 0.6)
    assert job.extra_params == {"sampler": ("euler_a",)}
    assert job.output == "image/png"
    assert job.bid == Bid(min_msats=10000, max_msats=10000)
    assert job.relays == ("wss://relay.example", "ws://127.0.0.1:7777")
    assert job.providers == (PROVIDER.public_key,)
    assert job.encryption is None
    assert not job.encrypted
    assert job.inputs == (
        JobInput(data=IMAGE_URL, type=InputType.URL),
        JobInput(data=PROMPT, type=InputType.TEXT, relay="", marker="prompt"),
    )
    assert job.request == event


def test_minimal_request_leaves_options_unset() -> None:
    job = parse_image_job(prompt_request())
    assert job.prompt == PROMPT
    assert (job.model, job.ratio, job.size, job.bid, job.output) == (None,) * 5
    assert (job.loras, job.relays, job.providers) == ((), (), ())
    assert job.extra_params == {}


def test_job_is_frozen() -> None:
    job = parse_image_job(prompt_request())
    with pytest.raises(pydantic.ValidationError):
        job.prompt = "something else"  # type: ignore[misc]


def test_job_is_immutable_all_the_way_down_and_hashable() -> None:
    event = prompt_request(("param", "sampler", "euler_a"), ("param", "lora", "a", "0.5"))
    job = parse_image_job(event)
    again = parse_image_job(event)
    assert hash(job) == hash(again)
    assert job == again
    assert len({job, again}) == 1
    # Read like a dict...
    assert job.extra_params["sampler"] == ("euler_a",)
    assert job.extra_params.get("missing") is None
    assert "sampler" in job.extra_params
    assert dict(job.extra_params) == {"sampler": ("euler_a",)}
    # ...but nothing can be changed in place.
    with pytest.raises(TypeError):
        job.extra_params["sampler"] = ("dpm",)  # type: ignore[index]
    with pytest.raises(TypeError):
        del job.extra_params["sampler"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        job.extra_params.update({"x": ("y",)})  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        job.extra_params = ExtraParams({})  # type: ignore[misc]
    assert isinstance(job.extra_params["sampler"], tuple)
    assert isinstance(job.loras, tuple)
    assert isinstance(job.inputs, tuple)


def test_job_dumps_and_validates_back() -> None:
    job = parse_image_job(prompt_request(("param", "sampler", "dpm", "karras")))
    dumped = job.model_dump(mode="json")
    assert dumped["extra_params"] == {"sampler": ["dpm", "karras"]}
    assert job.model_dump()["extra_params"] == {"sampler": ("dpm", "karras")}
    assert ImageJob.model_validate(job.model_dump()) == job
    assert ImageJob.model_validate_json(job.model_dump_json()) == job
    with pytest.raises(pydantic.ValidationError):
        ImageJob.model_validate({**job.model_dump(), "extra_params": {"x": [1]}})


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('{"kind": 5100, "tags": []}', "str"),
        (b"{}", "bytes"),
        ({"kind": 5100, "tags": [["i", "x", "text"]]}, "dict"),
        (None, "NoneType"),
    ],
)
def test_anything_but_an_event_is_a_type_error(value: object, named: str) -> None:
    with pytest.raises(TypeError, match=f"got {named}: pass an Event from parse_event") as info:
        parse_image_job(value)  # type: ignore[arg-type]
    assert len(str(info.value)) < 200
    assert not isinstance(info.value, UnsupportedKind)


def test_another_librarys_event_is_a_type_error() -> None:
    nostr_sdk = pytest.importorskip("nostr_sdk")
    theirs = nostr_sdk.Event.from_json(prompt_request().to_json())
    with pytest.raises(TypeError, match=r"got nostr_sdk\.Event: pass an Event from parse_event"):
        parse_image_job(theirs)


def test_a_provider_that_is_not_a_signer_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="provider=Keys or another Signer, got str"):
        parse_image_job(prompt_request(), provider=PROVIDER.nsec())  # type: ignore[arg-type]


# --- kinds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"), [(4999, False), (5000, True), (5999, True), (6000, False)]
)
def test_request_kind_range_is_half_open(kind: int, expected: bool) -> None:
    assert is_request_kind(kind) is expected


@pytest.mark.parametrize("kind", [5000, 5999])
def test_accepted_kinds_at_the_range_edges_are_allowed(kind: int) -> None:
    job = parse_image_job(prompt_request(kind=kind), accepted_kinds=(kind,))
    assert job.kind == kind


@pytest.mark.parametrize("kind", [4999, 6000, 6100, 7000, 1])
def test_accepted_kinds_outside_the_request_range_are_a_config_error(kind: int) -> None:
    with pytest.raises(ConfigError, match=str(kind)):
        parse_image_job(prompt_request(), accepted_kinds=(5100, kind))


def test_no_accepted_kinds_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_image_job(prompt_request(), accepted_kinds=())


def test_kind_5050_is_skipped_by_default_and_accepted_on_request() -> None:
    event = prompt_request(kind=5050)
    with pytest.raises(UnsupportedKind) as info:
        parse_image_job(event)
    assert info.value.kind == 5050
    assert info.value.accepted == (5100,)
    assert parse_image_job(event, accepted_kinds=(5100, 5050)).kind == 5050


def test_kind_is_checked_before_anything_else() -> None:
    # Malformed tags and a foreign `p` do not matter for a kind we do not serve.
    event = request(("i", "x", "bogus"), ("p", Keys.generate().public_key), kind=5001)
    with pytest.raises(UnsupportedKind):
        parse_image_job(event, provider=PROVIDER)


# --- addressing ------------------------------------------------------------------------------


def test_job_for_another_provider_is_skipped_not_rejected() -> None:
    other = Keys.generate()
    with pytest.raises(NotForThisProvider) as info:
        parse_image_job(prompt_request(("p", other.public_key)), provider=PROVIDER)
    assert isinstance(info.value, JobSkipped)
    assert not isinstance(info.value, JobRejected)
    assert info.value.providers == (other.public_key,)


def test_job_naming_us_among_others_is_ours() -> None:
    other = Keys.generate()
    event = prompt_request(("p", other.public_key), ("p", PROVIDER.public_key, "wss://r.example"))
    job = parse_image_job(event, provider=PROVIDER)
    assert job.providers == (other.public_key, PROVIDER.public_key)


def test_p_tags_are_not_checked_without_provider_keys() -> None:
    other = Keys.generate()
    assert parse_image_job(prompt_request(("p", other.public_key))).providers == (other.public_key,)


def test_malformed_p_tag_is_rejected() -> None:
    exc = rejected(("p", "npub1notahexkey"), provider=PROVIDER)
    assert exc.tag == ("p", "npub1notahexkey")


def test_provider_is_checked_before_decryption() -> None:
    # Content that no key could decrypt: the foreign `p` must win over the decryption error.
    other = Keys.generate()
    event = request(("p", other.public_key), ("encrypted",), content="garbage")
    with pytest.raises(NotForThisProvider):
        parse_image_job(event, provider=PROVIDER)


# --- encrypted requests ----------------------------------------------------------------------


SECRET_TAGS = [
    ["i", PROMPT, "text"],
    ["param", "ratio", "16:9"],
    ["param", "negative_prompt", "blurry"],
    ["bid", "5000"],
]


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_encrypted_request_is_decrypted_with_its_scheme(scheme: EncryptionScheme) -> None:
    event = encrypted_request(SECRET_TAGS, ("relays", "wss://relay.example"), scheme=scheme)
    job = parse_image_job(event, provider=PROVIDER)
    assert job.encryption is scheme
    assert job.encrypted
    assert job.prompt == PROMPT
    assert job.ratio is Ratio.LANDSCAPE_16_9
    assert job.negative_prompt == "blurry"
    assert job.bid == Bid(min_msats=5000, max_msats=5000)
    assert job.relays == ("wss://relay.example",)  # clear tags still count
    assert job.inputs == (JobInput(data=PROMPT, type=InputType.TEXT),)


def test_addressing_inside_the_encrypted_payload_is_ignored() -> None:
    stranger = Keys.generate().public_key
    event = encrypted_request([*SECRET_TAGS, ["p", stranger], ["encrypted"]])
    job = parse_image_job(event, provider=PROVIDER)
    assert job.providers == (PROVIDER.public_key,)


def test_encrypted_request_without_provider_keys_is_rejected() -> None:
    with pytest.raises(JobRejected, match="encrypted") as info:
        parse_image_job(encrypted_request(SECRET_TAGS))
    assert info.value.tag == ("encrypted",)


def test_encrypted_request_for_another_key_cannot_be_decrypted() -> None:
    # Addressed to us in `p`, but encrypted to somebody else.
    stranger = Keys.generate()
    event = encrypted_request(SECRET_TAGS, to=stranger)
    event = request(("p", PROVIDER.public_key), ("encrypted",), content=event.content)
    with pytest.raises(JobRejected, match="could not be decrypted"):
        parse_image_job(event, provider=PROVIDER)


@pytest.mark.parametrize(
    "plaintext",
    [
        "not json",
        '{"i": "a dict"}',
        '"a string"',
        '[["i", "prompt", "text"], "not a list"]',
        '[["i", "prompt", 5]]',
        '[["i", ["nested"], "text"]]',
        "[" * 5000 + "]" * 5000,
        '[["i", "a lone surrogate \\ud800", "text"]]',
    ],
)
def test_decrypted_payload_must_be_a_list_of_string_lists(plaintext: str) -> None:
    with pytest.raises(JobRejected, match="decrypted"):
        parse_image_job(encrypted_request(plaintext), provider=PROVIDER)


def test_decrypted_tags_are_bounded_too() -> None:
    many = [["i", PROMPT, "text"]] + [["t", str(n)] for n in range(DEFAULT_JOB_LIMITS.max_tags)]
    with pytest.raises(JobRejected, match="tags"):
        parse_image_job(encrypted_request(many), provider=PROVIDER)


def test_oversized_encrypted_content_is_rejected_before_decrypting() -> None:
    limits = JobLimits(max_encrypted_chars=100)
    with pytest.raises(JobRejected, match="longer than 100"):
        parse_image_job(encrypted_request(SECRET_TAGS), provider=PROVIDER, limits=limits)


def test_malformed_encrypted_tag_is_rejected() -> None:
    event = encrypted_request(SECRET_TAGS, ("encrypted", "yes"))
    with pytest.raises(JobRejected) as info:
        parse_image_job(event, provider=PROVIDER)
    assert info.value.tag == ("encrypted", "yes")


# --- inputs ----------------------------------------------------------------------------------


def test_url_input_may_come_before_the_text() -> None:
    job = parse_image_job(request(("i", IMAGE_URL, "url"), ("i", "In style of Picasso", "text")))
    assert (job.prompt, job.image_url) == ("In style of Picasso", IMAGE_URL)


def test_several_text_inputs_are_joined_in_order() -> None:
    job = parse_image_job(
        request(("i", "a cat", "text"), ("i", "  ", "text"), ("i", "in a hat", "text"))
    )
    assert job.prompt == "a cat\nin a hat"  # blank texts add nothing


@pytest.mark.parametrize(
    "tags",
    [
        (),
        (("i", "", "text"),),
        (("i", " \n ", "text"),),
        (("i", IMAGE_URL, "url"),),
        (("param", "ratio", "1:1"),),
    ],
)
def test_request_without_a_prompt_is_rejected(tags: tuple[tuple[str, ...], ...]) -> None:
    with pytest.raises(JobRejected, match="no prompt"):
        parse_image_job(request(*tags))


def test_second_image_url_is_rejected() -> None:
    exc = rejected(("i", IMAGE_URL, "url"), ("i", "https://example.com/b.png", "url"))
    assert exc.tag == ("i", "https://example.com/b.png", "url")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://exa mple.com/a.png",
        "https:///no-host.png",
        "https://example.com:99999/a.png",
        "https://[::1/a.png",
        "example.com/a.png",
        "",
    ],
)
def test_image_url_must_be_http_or_https(url: str) -> None:
    exc = rejected(("i", url, "url"))
    assert exc.tag == ("i", url, "url")


def test_image_url_length_is_bounded() -> None:
    url = "https://example.com/" + "a" * 3000
    with pytest.raises(JobRejected, match="longer than 2048"):
        parse_image_job(prompt_request(("i", url, "url")))


@pytest.mark.parametrize("input_type", ["event", "job"])
def test_event_and_job_inputs_are_not_supported_without_a_resolver(input_type: str) -> None:
    tag = ("i", "ab" * 32, input_type, "wss://relay.example")
    exc = rejected(tag)
    assert "not supported" in exc.reason
    assert exc.tag == tag


def test_resolver_turns_a_job_input_into_the_image_url() -> None:
    seen: list[JobInput] = []

    def resolve(job_input: JobInput) -> JobInput:
        seen.append(job_input)
        return JobInput(data=IMAGE_URL, type=InputType.URL)

    tag = ("i", "ab" * 32, "job")
    job = parse_image_job(prompt_request(tag), input_resolver=resolve)
    assert job.image_url == IMAGE_URL
    assert seen == [JobInput(data="ab" * 32, type=InputType.JOB)]
    assert job.inputs[1].to_tag() == tag  # the job keeps the input as received


def test_resolver_result_must_be_text_or_url() -> None:
    def resolve(job_input: JobInput) -> JobInput:
        return job_input

    with pytest.raises(JobRejected, match="did not resolve"):
        parse_image_job(prompt_request(("i", "ab" * 32, "event")), input_resolver=resolve)


def test_resolved_url_is_checked_like_a_sent_one() -> None:
    def resolve(job_input: JobInput) -> JobInput:
        return JobInput(data="file:///etc/passwd", type=InputType.URL)

    with pytest.raises(JobRejected, match="http"):
        parse_image_job(prompt_request(("i", "ab" * 32, "event")), input_resolver=resolve)


@pytest.mark.parametrize(
    "tag", [("i", "x"), ("i", "x", "image"), ("i", "x", "text", "", "", "extra")]
)
def test_malformed_input_tag_is_rejected(tag: tuple[str, ...]) -> None:
    assert rejected(tag).tag == tag


def test_prompt_length_is_bounded() -> None:
    limits = JobLimits(max_prompt_chars=10)
    with pytest.raises(JobRejected, match="longer than 10"):
        parse_image_job(request(("i", "12345", "text"), ("i", "67890", "text")), limits=limits)


# --- params ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdxl-turbo", "SD_1.5", "flux.1-schnell", "a", "x" * 64])
def test_model_names_may_be_plain_names(name: str) -> None:
    assert parse_image_job(prompt_request(("param", "model", name))).model == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../../etc/passwd",
        "/models/sdxl.safetensors",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "C:\\models\\x",
        ".hidden",
        "-flag",
        "a..b",
        "x" * 65,
        "name with space",
        "modèle",
    ],
)
def test_model_and_lora_names_are_never_paths_or_repos(name: str) -> None:
    for key in ("model", "lora"):
        exc = rejected(("param", key, name))
        assert exc.tag == ("param", key, name)
        assert "name" in exc.reason


def test_several_loras_with_and_without_weights() -> None:
    job = parse_image_job(
        prompt_request(("param", "lora", "pixel-art", "0.8"), ("param", "lora", "film-grain"))
    )
    assert job.loras == (
        LoraRequest(name="pixel-art", weight=0.8),
        LoraRequest(name="film-grain", weight=None),
    )


def test_lora_weight_param_applies_to_loras_without_their_own() -> None:
    job = parse_image_job(
        prompt_request(
            ("param", "lora_weight", "0.5"),
            ("param", "lora", "a", "1.2"),
            ("param", "lora", "b"),
        )
    )
    assert job.loras == (LoraRequest(name="a", weight=1.2), LoraRequest(name="b", weight=0.5))


def test_lora_weight_without_a_lora_is_rejected() -> None:
    assert rejected(("param", "lora_weight", "0.5")).tag == ("param", "lora_weight", "0.5")


@pytest.mark.parametrize(
    "tag",
    [
        ("param", "lora", "a", "5"),
        ("param", "lora", "a", "-4.5"),
        ("param", "lora", "a", "nan"),
        ("param", "lora", "a", "1e1"),
        ("param", "lora", "a", "strong"),
        ("param", "lora", "a", "0.5", "extra"),
    ],
)
def test_bad_lora_weights_are_rejected(tag: tuple[str, ...]) -> None:
    assert rejected(tag).tag == tag


def test_lora_count_and_duplicates_are_bounded() -> None:
    loras = [("param", "lora", f"l{n}") for n in range(DEFAULT_JOB_LIMITS.max_loras + 1)]
    assert rejected(*loras).tag == loras[-1]
    assert "more than once" in rejected(("param", "lora", "a"), ("param", "lora", "a", "1")).reason


@pytest.mark.parametrize("ratio", list(Ratio))
def test_every_spec_ratio_is_accepted(ratio: Ratio) -> None:
    assert parse_image_job(prompt_request(("param", "ratio", ratio.value))).ratio is ratio


def test_ratio_in_two_values() -> None:
    job = parse_image_job(prompt_request(("param", "ratio", "16", "9")))
    assert job.ratio is Ratio.LANDSCAPE_16_9


@pytest.mark.parametrize(
    "tag",
    [
        ("param", "ratio", "5:4"),
        ("param", "ratio", "2:1"),
        ("param", "ratio", "16x9"),
        ("param", "ratio", "16", "10", "1"),
        ("param", "ratio", "5", "4"),
        ("param", "ratio", ""),
    ],
)
def test_other_ratios_are_rejected_with_the_allowed_list(tag: tuple[str, ...]) -> None:
    exc = rejected(tag)
    assert exc.tag == tag
    for ratio in Ratio:
        assert ratio.value in exc.reason
    assert "size=WxH" in exc.reason


@pytest.mark.parametrize(
    ("values", "size"),
    [
        (("512x512",), (512, 512)),
        (("1024X768",), (1024, 768)),
        (("512", "768"), (512, 768)),
        (("1x16384",), (1, 16384)),
    ],
)
def test_size_forms(values: tuple[str, ...], size: tuple[int, int]) -> None:
    assert parse_image_job(prompt_request(("param", "size", *values))).size == size


@pytest.mark.parametrize(
    "values",
    [
        ("512",),
        ("axb",),
        ("512x",),
        ("-512x512",),
        ("512 x 512",),
        ("0x512",),
        ("16385x1",),
        ("512", "a"),
        ("1", "2", "3"),
        ("99999999x1",),
    ],
)
def test_bad_sizes_are_rejected(values: tuple[str, ...]) -> None:
    tag = ("param", "size", *values)
    assert rejected(tag).tag == tag


@pytest.mark.parametrize(
    ("value", "factor"), [("1", 1.0), ("2", 2.0), ("2x", 2.0), ("1.5", 1.5), ("4X", 4.0)]
)
def test_upscale_factor_forms(value: str, factor: float) -> None:
    assert parse_image_job(prompt_request(("param", "upscale", value))).upscale == factor


@pytest.mark.parametrize("value", ["0", "0.5", "9", "x2", "2xx", "two", "", "inf", "nan"])
def test_bad_upscale_factors_are_rejected(value: str) -> None:
    assert rejected(("param", "upscale", value)).tag == ("param", "upscale", value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("seed", "0", 0),
        ("seed", str(2**63 - 1), 2**63 - 1),
        ("steps", "1", 1),
        ("steps", "150", 150),
        ("guidance_scale", "0", 0.0),
        ("guidance_scale", "30", 30.0),
        ("guidance_scale", ".5", 0.5),
        ("strength", "1", 1.0),
        ("strength", "0.05", 0.05),
    ],
)
def test_numeric_params_at_their_bounds(key: str, value: str, expected: float) -> None:
    job = parse_image_job(prompt_request(("param", key, value)))
    assert getattr(job, key) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seed", "-1"),
        ("seed", str(2**63)),
        ("seed", "1.5"),
        ("seed", "9" * 30),
        ("steps", "0"),
        ("steps", "151"),
        ("guidance_scale", "-0.1"),
        ("guidance_scale", "30.5"),
        ("guidance_scale", "1e1"),
        ("guidance_scale", "inf"),
        ("strength", "0"),
        ("strength", "1.01"),
        ("strength", "nan"),
    ],
)
def test_numeric_params_out_of_range_are_rejected(key: str, value: str) -> None:
    exc = rejected(("param", key, value))
    assert exc.tag == ("param", key, value)
    assert key in exc.reason


def test_negative_prompt_blank_means_none() -> None:
    assert (
        parse_image_job(prompt_request(("param", "negative_prompt", " "))).negative_prompt is None
    )


def test_negative_prompt_length_is_bounded() -> None:
    limits = JobLimits(max_prompt_chars=5)
    with pytest.raises(JobRejected, match="negative_prompt"):
        parse_image_job(
            request(("i", "cat", "text"), ("param", "negative_prompt", "abcdef")), limits=limits
        )


def test_single_valued_param_given_twice_is_rejected() -> None:
    exc = rejected(("param", "ratio", "1:1"), ("param", "ratio", "4:3"))
    assert exc.tag == ("param", "ratio", "4:3")
    assert "more than once" in exc.reason


def test_single_valued_param_with_two_values_is_rejected() -> None:
    assert rejected(("param", "model", "a", "b")).tag == ("param", "model", "a", "b")


def test_param_without_value_is_rejected() -> None:
    assert rejected(("param", "model")).tag == ("param", "model")


def test_unknown_params_are_kept_not_fatal() -> None:
    job = parse_image_job(
        prompt_request(("param", "sampler", "dpm"), ("param", "sampler", "karras", "x"))
    )
    assert job.extra_params == {"sampler": ("dpm", "karras", "x")}


# --- other tags ------------------------------------------------------------------------------


def test_bid_range() -> None:
    job = parse_image_job(prompt_request(("bid", "1000", "5000")))
    assert job.bid == Bid(min_msats=1000, max_msats=5000)


@pytest.mark.parametrize(
    "tag", [("bid", "-1"), ("bid", "010"), ("bid", "1.5"), ("bid", "5000", "1000"), ("bid",)]
)
def test_bad_bids_are_rejected(tag: tuple[str, ...]) -> None:
    assert rejected(tag).tag == tag


def test_one_output_tag_with_a_mime_type() -> None:
    assert parse_image_job(prompt_request(("output", "image/webp"))).output == "image/webp"
    assert rejected(("output", "png")).tag == ("output", "png")
    assert rejected(("output", "image/png"), ("output", "image/jpeg")).tag == (
        "output",
        "image/jpeg",
    )


def test_relays_are_merged_and_deduplicated() -> None:
    job = parse_image_job(
        prompt_request(
            ("relays", "wss://a.example", "wss://b.example"), ("relays", "wss://a.example")
        )
    )
    assert job.relays == ("wss://a.example", "wss://b.example")


def test_relays_must_be_websocket_urls_and_bounded() -> None:
    assert rejected(("relays", "https://a.example")).tag == ("relays", "https://a.example")
    many = ("relays", *(f"wss://r{n}.example" for n in range(DEFAULT_JOB_LIMITS.max_relays + 1)))
    assert "relays" in rejected(many).reason


def test_unrelated_tags_are_ignored() -> None:
    job = parse_image_job(prompt_request(("t", "art"), ("expiration", "1"), ("client", "x", "y")))
    assert job.prompt == PROMPT


# --- limits ----------------------------------------------------------------------------------


def test_tag_count_is_bounded() -> None:
    tags = [("t", str(n)) for n in range(DEFAULT_JOB_LIMITS.max_tags)]
    with pytest.raises(JobRejected, match="tags"):
        parse_image_job(prompt_request(*tags))


def test_tag_element_count_is_bounded() -> None:
    tag = ("t", *("x" for _ in range(DEFAULT_JOB_LIMITS.max_tag_elements)))
    exc = rejected(tag)
    assert exc.tag is not None
    assert len(exc.tag) < len(tag)  # quoted clipped, to keep the error feedback small


def test_element_length_is_bounded_and_quoted_short() -> None:
    tag = ("t", "x" * (DEFAULT_JOB_LIMITS.max_element_chars + 1))
    exc = rejected(tag)
    assert exc.tag is not None
    assert len(str(exc)) < 500


def test_limits_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_JOB_LIMITS.max_tags = 1  # type: ignore[misc]


def test_rejection_message_is_readable() -> None:
    exc = rejected(("param", "ratio", "5:4"))
    assert str(exc).startswith("ratio '5:4' is not one of 1:1, 4:3")
    assert str(exc).endswith("(tag ['param', 'ratio', '5:4'])")
