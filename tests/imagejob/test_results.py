"""Result events (kind 6xxx): exact wire form, kind arithmetic, encryption, reading them."""

from __future__ import annotations

import json

import pytest
from _answers_support import PROMPT, clear_job, encrypted_job, signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nostr_imagegen.errors import EncryptionError, EventError, NostrImagegenError
from nostr_imagegen.imagejob.results import (
    ImageLink,
    build_result,
    parse_result,
    result_kind_for,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, detect_scheme
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event
from nostr_imagegen.nostr.keys import Keys

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
URL_A = "https://cdn.example/a.png"
URL_B = "https://cdn.example/b.webp"
BOLT11 = "lnbc210n1pjexampleinvoice0qq"


@pytest.fixture
def customer() -> Keys:
    return Keys.generate()


@pytest.fixture
def provider() -> Keys:
    return Keys.generate()


def full_link(url: str = URL_A, sha: str = SHA_A) -> ImageLink:
    return ImageLink(
        url=url, mime="image/png", sha256=sha, width=1024, height=768, size_bytes=482113
    )


# --- ImageLink / imeta --------------------------------------------------------------------


def test_imeta_tag_lists_every_known_field_in_order() -> None:
    assert full_link().to_imeta_tag() == (
        "imeta",
        f"url {URL_A}",
        "m image/png",
        f"x {SHA_A}",
        "dim 1024x768",
        "size 482113",
    )


def test_imeta_tag_leaves_out_unknown_fields() -> None:
    link = ImageLink(url=URL_B, width=512, height=512)
    assert link.to_imeta_tag() == ("imeta", f"url {URL_B}", "dim 512x512")


@pytest.mark.parametrize(
    "link",
    [
        full_link(),
        ImageLink(url=URL_B, mime="image/webp"),
        ImageLink(url=URL_A, sha256=SHA_B),
        ImageLink(url=URL_A, width=1, height=100_000),
        ImageLink(url=URL_A, size_bytes=0),
    ],
)
def test_imeta_round_trips(link: ImageLink) -> None:
    tag = link.to_imeta_tag()
    assert ImageLink.from_imeta_tag(tag) == link
    assert ImageLink.from_imeta_tag(tag).to_imeta_tag() == tag


def test_imeta_parser_ignores_other_nip94_fields_and_repeats() -> None:
    tag = [
        "imeta",
        f"url {URL_A}",
        "blurhash eVF$^OI:${M{o#*0-nNFxakD-?xVM}WEWB%iNKxvR-oetmo#R-aen$",
        "m IMAGE/JPEG",
        "alt a photo",
        "fallback https://other.example/a.jpg",
        "m image/png",
    ]
    assert ImageLink.from_imeta_tag(tag) == ImageLink(url=URL_A, mime="image/jpeg")


@pytest.mark.parametrize(
    "tag",
    [
        ["imeta", "m image/png"],
        ["url", URL_A],
        [],
        ["imeta", f"url {URL_A}", "dim 1024"],
        ["imeta", f"url {URL_A}", "dim -1x5"],
        ["imeta", f"url {URL_A}", "size 12kb"],
        ["imeta", f"url {URL_A}", "x nothex"],
        ["imeta", "url javascript:alert(1)", "m image/png"],
        ["imeta", f"url {URL_A}", *(["m image/png"] * 65)],
    ],
)
def test_imeta_parser_refuses_malformed_tags(tag: list[str]) -> None:
    with pytest.raises(EventError):
        ImageLink.from_imeta_tag(tag)


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "ftp://cdn.example/a.png"},
        {"url": "https://cdn.example/a b.png"},
        {"url": "https://cdn.example/a.png\nhttps://evil.example"},
        {"url": URL_A, "sha256": "A" * 64},
        {"url": URL_A, "width": 10},
        {"url": URL_A, "width": 0, "height": 10},
        {"url": URL_A, "mime": "png"},
        {"url": URL_A, "size_bytes": -1},
    ],
)
def test_image_link_refuses_bad_values_with_our_error(fields: dict[str, object]) -> None:
    with pytest.raises(EventError):
        ImageLink(**fields)  # type: ignore[arg-type]


def test_url_only_link_has_no_imeta_tag() -> None:
    link = ImageLink(url=URL_A)
    assert not link.has_metadata
    with pytest.raises(EventError, match="NIP-92"):
        link.to_imeta_tag()


# --- kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kind", "result_kind"), [(5000, 6000), (5100, 6100), (5999, 6999)]
)
def test_result_kind_is_request_kind_plus_1000(request_kind: int, result_kind: int) -> None:
    assert result_kind_for(request_kind) == result_kind


@pytest.mark.parametrize("request_kind", [4999, 6000, 7000, 0])
def test_result_kind_refuses_non_request_kinds(request_kind: int) -> None:
    with pytest.raises(EventError, match="not a NIP-90 job request kind"):
        result_kind_for(request_kind)


@pytest.mark.parametrize(("kind", "ok"), [(4999, False), (5000, True), (5999, True), (6000, False)])
def test_build_result_checks_the_job_kind_boundaries(customer: Keys, kind: int, ok: bool) -> None:
    job = clear_job(customer, kind=kind)
    if ok:
        assert build_result(job, [full_link()]).kind == kind + 1000
    else:
        with pytest.raises(EventError):
            build_result(job, [full_link()])


# --- building clear results ---------------------------------------------------------------


def test_clear_result_has_the_exact_wire_form(customer: Keys, provider: Keys) -> None:
    job = clear_job(customer)
    template = build_result(
        job,
        [full_link(), ImageLink(url=URL_B, mime="image/webp")],
        amount_msats=21000,
        bolt11=BOLT11,
        relay_hint="wss://relay.example",
        expiration=1_700_086_400,
    )
    event = signed(template, provider)
    assert event.kind == 6100
    assert event.pubkey == provider.public_key
    assert event.content == f"{URL_A}\n{URL_B}"
    assert [list(tag) for tag in event.tags] == [
        ["request", job.request.to_json()],
        ["e", job.id, "wss://relay.example"],
        ["p", customer.public_key],
        ["i", PROMPT, "text"],
        ["amount", "21000", BOLT11],
        ["alt", "Image generation result"],
        ["expiration", "1700086400"],
        ["imeta", f"url {URL_A}", "m image/png", f"x {SHA_A}", "dim 1024x768", "size 482113"],
        ["imeta", f"url {URL_B}", "m image/webp"],
    ]


def test_request_tag_is_the_compact_request_event(customer: Keys) -> None:
    job = clear_job(customer)
    request_json = build_result(job, [full_link()]).tag_value("request")
    assert request_json is not None
    compact = json.dumps(json.loads(request_json), separators=(",", ":"), ensure_ascii=False)
    assert request_json == compact
    assert parse_event(request_json) == job.request


def test_minimal_clear_result(customer: Keys) -> None:
    job = clear_job(customer)
    template = build_result(job, [ImageLink(url=URL_A)], alt="An ostrich at sunset")
    assert template.content == URL_A
    assert [tag[0] for tag in template.tags] == ["request", "e", "p", "i", "alt"]
    assert template.first_tag("e") == ("e", job.id)
    assert template.first_tag("alt") == ("alt", "An ostrich at sunset")


def test_result_quotes_every_i_tag_of_the_request_verbatim(customer: Keys) -> None:
    tags = (
        ("i", "https://in.example/cat.jpg", "url"),
        ("i", "In style of Pablo Picasso", "text", "", "prompt"),
        ("param", "size", "512x512"),
    )
    request = signed(UnsignedEvent(kind=5100, tags=tags), customer)
    job = clear_job(customer).model_copy(update={"id": request.id, "request": request})
    template = build_result(job, [full_link()])
    assert list(template.tags_named("i")) == list(tags[:2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bolt11": BOLT11}, "amount_msats"),
        ({"amount_msats": -1}, "amount_msats"),
        ({"amount_msats": True}, "amount_msats"),
        ({"amount_msats": 10, "bolt11": "not an invoice"}, "bolt11"),
        ({"relay_hint": "https://relay.example"}, "relay hint"),
        ({"relay_hint": "wss://relay.example/ x"}, "relay hint"),
        ({"expiration": -5}, "expiration"),
    ],
)
def test_build_result_refuses_bad_options(
    customer: Keys, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(EventError, match=match):
        build_result(clear_job(customer), [full_link()], **kwargs)  # type: ignore[arg-type]


def test_build_result_needs_distinct_images(customer: Keys) -> None:
    job = clear_job(customer)
    with pytest.raises(EventError, match="at least one"):
        build_result(job, [])
    with pytest.raises(EventError, match="only once"):
        build_result(job, [full_link(), full_link(sha=SHA_B)])


def test_alt_text_is_one_bounded_line(customer: Keys) -> None:
    template = build_result(clear_job(customer), [full_link()], alt="line one\nline two " * 100)
    alt = template.tag_value("alt")
    assert alt is not None
    assert "\n" not in alt
    assert len(alt) <= 280


# --- encrypted results --------------------------------------------------------------------


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_encrypted_result_hides_inputs_and_links(
    customer: Keys, provider: Keys, scheme: EncryptionScheme
) -> None:
    job = encrypted_job(customer, provider, scheme)
    template = build_result(job, [full_link(), full_link(URL_B, SHA_B)], keys=provider)
    event = signed(template, provider)
    assert [list(tag) for tag in event.tags] == [
        ["request", job.request.to_json()],
        ["e", job.id],
        ["p", customer.public_key],
        ["alt", "Image generation result"],
        ["encrypted"],
    ]
    assert URL_A not in event.to_json()
    assert PROMPT not in event.to_json()
    assert detect_scheme(event.content) is scheme
    plaintext, used = decrypt(event.content, customer, provider.public_key)
    assert (plaintext, used) == (f"{URL_A}\n{URL_B}", scheme)


def test_encrypted_result_keeps_the_amount_in_the_clear(customer: Keys, provider: Keys) -> None:
    job = encrypted_job(customer, provider, EncryptionScheme.NIP44)
    template = build_result(job, [full_link()], keys=provider, amount_msats=5000)
    assert template.first_tag("amount") == ("amount", "5000")


def test_encrypted_result_needs_the_provider_keys(customer: Keys, provider: Keys) -> None:
    job = encrypted_job(customer, provider, EncryptionScheme.NIP44)
    with pytest.raises(EncryptionError, match="keys"):
        build_result(job, [full_link()])


# --- reading results (customer side) ------------------------------------------------------


def test_parse_result_reads_back_what_was_built(customer: Keys, provider: Keys) -> None:
    job = clear_job(customer)
    links = [full_link(), ImageLink(url=URL_B, mime="image/webp")]
    event = signed(build_result(job, links, amount_msats=21000, bolt11=BOLT11), provider)
    parsed = parse_result(event)
    assert parsed.request_id == job.id
    assert parsed.provider == provider.public_key
    assert parsed.urls == (URL_A, URL_B)
    assert parsed.images == tuple(links)
    assert (parsed.amount_msats, parsed.bolt11) == (21000, BOLT11)
    assert parsed.encrypted is False


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_parse_result_decrypts_with_the_customer_keys(
    customer: Keys, provider: Keys, scheme: EncryptionScheme
) -> None:
    job = encrypted_job(customer, provider, scheme)
    event = signed(
        build_result(job, [full_link(), full_link(URL_B, SHA_B)], keys=provider), provider
    )
    parsed = parse_result(event, keys=customer)
    assert parsed.urls == (URL_A, URL_B)
    assert parsed.images == ()
    assert parsed.encrypted is True
    with pytest.raises(EncryptionError):
        parse_result(event)
    if scheme is EncryptionScheme.NIP44:  # NIP-04 has no MAC: a wrong key may go unnoticed
        with pytest.raises(EncryptionError):
            parse_result(event, keys=Keys.generate())


def result_event(content: str, tags: list[list[str]], kind: int = 6100) -> UnsignedEvent:
    return UnsignedEvent(
        kind=kind, content=content, tags=tuple(tuple(t) for t in [["e", "ab" * 32], *tags])
    )


@pytest.mark.parametrize(
    ("content", "urls"),
    [
        (json.dumps([URL_A, URL_B]), (URL_A, URL_B)),
        (f"Here is your image: {URL_A} enjoy", (URL_A,)),
        (f"{URL_A}\r\n{URL_A}\n\n{URL_B}", (URL_A, URL_B)),
        ("javascript:alert(1)\nfile:///etc/passwd", ()),
    ],
)
def test_parse_result_finds_links_in_other_providers_content(
    provider: Keys, content: str, urls: tuple[str, ...]
) -> None:
    event = signed(result_event(content, []), provider)
    assert parse_result(event).urls == urls


def test_parse_result_falls_back_to_imeta_and_skips_bad_ones(provider: Keys) -> None:
    tags = [
        ["imeta", "dim 5x5"],
        ["imeta", f"url {URL_B}", "m image/webp"],
        ["imeta", f"url {URL_A}", "dim huge"],
    ]
    parsed = parse_result(signed(result_event("done!", tags), provider))
    assert parsed.urls == (URL_B,)
    assert parsed.images == (ImageLink(url=URL_B, mime="image/webp"),)


@pytest.mark.parametrize("kind", [5100, 5999, 7000, 7001])
def test_parse_result_refuses_other_kinds(provider: Keys, kind: int) -> None:
    with pytest.raises(EventError, match="not a job result kind"):
        parse_result(signed(result_event(URL_A, [], kind=kind), provider))


@pytest.mark.parametrize("kind", [6000, 6999])
def test_parse_result_accepts_the_range_ends(provider: Keys, kind: int) -> None:
    assert parse_result(signed(result_event(URL_A, [], kind=kind), provider)).urls


def test_parse_result_needs_a_request_reference(provider: Keys) -> None:
    event = signed(UnsignedEvent(kind=6100, content=URL_A), provider)
    with pytest.raises(EventError, match="e tag"):
        parse_result(event)
    bad = signed(UnsignedEvent(kind=6100, content=URL_A, tags=(("e", "xyz"),)), provider)
    with pytest.raises(EventError, match="not an id"):
        parse_result(bad)


def test_parse_result_refuses_a_garbled_amount(provider: Keys) -> None:
    event = signed(result_event(URL_A, [["amount", "12abc"]]), provider)
    with pytest.raises(EventError, match="amount"):
        parse_result(event)


# --- hostile input ------------------------------------------------------------------------

_text = st.text(max_size=80)
_tag = st.one_of(
    st.lists(_text, max_size=5),
    st.tuples(st.sampled_from(["imeta", "amount", "e", "encrypted"]), _text, _text).map(list),
    st.lists(
        st.sampled_from(["url https://a.example/x.png", "dim 3x4", "m image/png", "size 9"])
        | _text.map(lambda s: "x " + s),
        max_size=6,
    ).map(lambda entries: ["imeta", *entries]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_text, tags=st.lists(_tag, max_size=8), kind=st.integers(5990, 7010))
def test_parse_result_raises_only_our_errors(
    content: str, tags: list[list[str]], kind: int
) -> None:
    event = Event.model_construct(
        id="00" * 32,
        pubkey="11" * 32,
        created_at=0,
        kind=kind,
        tags=tuple(tuple(t) for t in [["e", "ab" * 32], *tags]),
        content=content,
        sig="22" * 64,
    )
    try:
        parsed = parse_result(event, keys=Keys.generate())
    except NostrImagegenError:
        return
    assert all(url.startswith(("http://", "https://")) for url in parsed.urls)
    assert len(parsed.urls) <= 32


@settings(max_examples=150, deadline=None)
@given(
    url=st.from_regex(r"https://[a-z]{1,10}\.example/[A-Za-z0-9._~%-]{0,40}", fullmatch=True),
    mime=st.none() | st.sampled_from(["image/png", "image/jpeg", "image/webp"]),
    sha=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    dim=st.none() | st.tuples(st.integers(1, 100_000), st.integers(1, 100_000)),
    size=st.none() | st.integers(0, 2**53),
)
def test_imeta_round_trip_property(
    url: str, mime: str | None, sha: str | None, dim: tuple[int, int] | None, size: int | None
) -> None:
    width, height = dim if dim is not None else (None, None)
    link = ImageLink(url=url, mime=mime, sha256=sha, width=width, height=height, size_bytes=size)
    if not link.has_metadata:
        return
    assert ImageLink.from_imeta_tag(link.to_imeta_tag()) == link
