"""Feedback events (kind 7000): the five statuses on the wire, bounds, encryption, reading them."""

from __future__ import annotations

import json

import pytest
from _answers_support import clear_job, encrypted_job, signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nostr_imagegen.errors import EncryptionError, EventError, NostrImagegenError
from nostr_imagegen.imagejob.results import JobStatus, build_feedback, parse_feedback
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, detect_scheme
from nostr_imagegen.nostr.event import Event, UnsignedEvent
from nostr_imagegen.nostr.keys import Keys

BOLT11 = "lnbc210n1pjexampleinvoice0qq"


@pytest.fixture
def customer() -> Keys:
    return Keys.generate()


@pytest.fixture
def provider() -> Keys:
    return Keys.generate()


def test_status_wire_values() -> None:
    assert [s.value for s in JobStatus] == [
        "payment-required",
        "processing",
        "error",
        "success",
        "partial",
    ]


def test_payment_required_feedback(customer: Keys, provider: Keys) -> None:
    job = clear_job(customer)
    template = build_feedback(
        job,
        JobStatus.PAYMENT_REQUIRED,
        message="pay 21 sats to start",
        amount_msats=21000,
        bolt11=BOLT11,
        relay_hint="wss://relay.example",
        expiration=1_700_003_600,
    )
    event = signed(template, provider)
    assert (event.kind, event.content) == (7000, "")
    assert [list(tag) for tag in event.tags] == [
        ["status", "payment-required", "pay 21 sats to start"],
        ["e", job.id, "wss://relay.example"],
        ["p", customer.public_key],
        ["amount", "21000", BOLT11],
        ["alt", "Image generation job status: payment-required"],
        ["expiration", "1700003600"],
    ]


def test_payment_required_needs_an_amount(customer: Keys) -> None:
    with pytest.raises(EventError, match="amount_msats"):
        build_feedback(clear_job(customer), JobStatus.PAYMENT_REQUIRED, bolt11=BOLT11)


def test_processing_feedback_with_progress(customer: Keys) -> None:
    job = clear_job(customer)
    template = build_feedback(
        job, JobStatus.PROCESSING, message="step 3/20", progress=0.15, queue_position=2
    )
    assert [list(tag) for tag in template.tags] == [
        ["status", "processing", "step 3/20; queued: position 2; 15%"],
        ["e", job.id],
        ["p", customer.public_key],
        ["alt", "Image generation job status: processing"],
    ]


def test_plain_processing_feedback_has_no_note(customer: Keys) -> None:
    template = build_feedback(clear_job(customer), "processing")  # type: ignore[arg-type]
    assert template.first_tag("status") == ("status", "processing")


def test_error_feedback_carries_the_reason(customer: Keys) -> None:
    job = clear_job(customer)
    template = build_feedback(job, JobStatus.ERROR, message="ratio 5:4 is not offered")
    assert [list(tag) for tag in template.tags] == [
        ["status", "error", "ratio 5:4 is not offered"],
        ["e", job.id],
        ["p", customer.public_key],
        ["alt", "Image generation job status: error"],
    ]


@pytest.mark.parametrize("message", [None, "", "  \n "])
def test_error_feedback_needs_a_reason(customer: Keys, message: str | None) -> None:
    with pytest.raises(EventError, match="message"):
        build_feedback(clear_job(customer), JobStatus.ERROR, message=message)


def test_success_feedback(customer: Keys, provider: Keys) -> None:
    job = clear_job(customer)
    event = signed(build_feedback(job, JobStatus.SUCCESS, amount_msats=1000), provider)
    assert [list(tag) for tag in event.tags] == [
        ["status", "success"],
        ["e", job.id],
        ["p", customer.public_key],
        ["amount", "1000"],
        ["alt", "Image generation job status: success"],
    ]


def test_partial_feedback_carries_a_sample_in_content(customer: Keys) -> None:
    template = build_feedback(
        clear_job(customer),
        JobStatus.PARTIAL,
        message="preview",
        content="https://cdn.example/preview.jpg",
        alt="Preview of your image",
    )
    assert template.content == "https://cdn.example/preview.jpg"
    assert template.first_tag("status") == ("status", "partial", "preview")
    assert template.first_tag("alt") == ("alt", "Preview of your image")


def test_status_note_is_one_bounded_line(customer: Keys) -> None:
    hostile = "\x1b[31mred\x1b[0m line\nnext line\u2028" + "x" * 10_000
    template = build_feedback(clear_job(customer), JobStatus.ERROR, message=hostile)
    status = template.first_tag("status")
    assert status is not None
    note = status[2]
    assert len(note) == 280
    assert note.endswith("…")
    assert note.startswith("[31mred [0m line next line x")
    assert not any(ord(ch) < 32 for ch in note)


@pytest.mark.parametrize(
    ("status", "kwargs", "match"),
    [
        (JobStatus.SUCCESS, {"progress": 0.5}, "processing"),
        (JobStatus.ERROR, {"message": "x", "queue_position": 1}, "processing"),
        (JobStatus.PROCESSING, {"progress": 1.5}, "between 0 and 1"),
        (JobStatus.PROCESSING, {"progress": -0.1}, "between 0 and 1"),
        (JobStatus.PROCESSING, {"queue_position": 0}, "from 1"),
        (JobStatus.PROCESSING, {"content": "x" * 20_000}, "content"),
        (JobStatus.SUCCESS, {"bolt11": BOLT11}, "amount_msats"),
        (JobStatus.SUCCESS, {"relay_hint": "relay.example"}, "relay hint"),
        ("done", {}, "unknown job status"),
    ],
)
def test_build_feedback_refuses_bad_options(
    customer: Keys, status: JobStatus, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(EventError, match=match):
        build_feedback(clear_job(customer), status, **kwargs)  # type: ignore[arg-type]


def test_feedback_for_an_event_matches_feedback_for_its_job(customer: Keys) -> None:
    job = clear_job(customer)
    from_job = build_feedback(job, JobStatus.PROCESSING, message="warming up")
    from_event = build_feedback(job.request, JobStatus.PROCESSING, message="warming up")
    assert from_event == from_job


@pytest.mark.parametrize(("kind", "ok"), [(4999, False), (5000, True), (5999, True), (6000, False)])
def test_feedback_checks_the_request_kind(customer: Keys, kind: int, ok: bool) -> None:
    request = signed(UnsignedEvent(kind=kind, tags=(("i", "x", "text"),)), customer)
    if ok:
        assert build_feedback(request, JobStatus.PROCESSING).kind == 7000
    else:
        with pytest.raises(EventError, match="not a NIP-90 job request kind"):
            build_feedback(request, JobStatus.PROCESSING)


# --- encrypted requests -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_feedback_to_an_encrypted_job_hides_the_note(
    customer: Keys, provider: Keys, scheme: EncryptionScheme
) -> None:
    job = encrypted_job(customer, provider, scheme)
    template = build_feedback(
        job, JobStatus.ERROR, message="lora pixel-art is not offered", keys=provider
    )
    event = signed(template, provider)
    assert [list(tag) for tag in event.tags] == [
        ["status", "error"],
        ["e", job.id],
        ["p", customer.public_key],
        ["alt", "Image generation job status: error"],
        ["encrypted"],
    ]
    assert "pixel-art" not in event.to_json()
    plaintext, used = decrypt(event.content, customer, provider.public_key)
    assert used is scheme
    assert json.loads(plaintext) == [["status", "error", "lora pixel-art is not offered"]]


def test_encrypted_feedback_keeps_amount_clear_and_inside(customer: Keys, provider: Keys) -> None:
    job = encrypted_job(customer, provider, EncryptionScheme.NIP44)
    template = build_feedback(
        job,
        JobStatus.PARTIAL,
        amount_msats=9000,
        bolt11=BOLT11,
        content="https://cdn.example/p.jpg",
        keys=provider,
    )
    assert template.first_tag("amount") == ("amount", "9000", BOLT11)
    plaintext, _ = decrypt(template.content, customer, provider.public_key)
    assert json.loads(plaintext) == [
        ["status", "partial"],
        ["amount", "9000", BOLT11],
        ["content", "https://cdn.example/p.jpg"],
    ]


def test_encrypted_feedback_needs_the_provider_keys(customer: Keys, provider: Keys) -> None:
    job = encrypted_job(customer, provider, EncryptionScheme.NIP04)
    with pytest.raises(EncryptionError, match="keys"):
        build_feedback(job, JobStatus.PROCESSING)


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_raw_encrypted_request_is_answered_with_its_scheme(
    customer: Keys, provider: Keys, scheme: EncryptionScheme
) -> None:
    request = encrypted_job(customer, provider, scheme).request
    template = build_feedback(request, JobStatus.PROCESSING, keys=provider)
    assert template.first_tag("encrypted") == ("encrypted",)
    assert detect_scheme(template.content) is scheme


def test_undecodable_encrypted_request_is_answered_with_nip04(
    customer: Keys, provider: Keys
) -> None:
    tags = (("p", provider.public_key), ("encrypted",))
    request = signed(UnsignedEvent(kind=5100, tags=tags, content="!!not a payload"), customer)
    template = build_feedback(request, JobStatus.ERROR, message="cannot decrypt", keys=provider)
    assert detect_scheme(template.content) is EncryptionScheme.NIP04


# --- reading feedback (customer side) -----------------------------------------------------


def test_parse_feedback_reads_back_what_was_built(customer: Keys, provider: Keys) -> None:
    job = clear_job(customer)
    template = build_feedback(
        job, JobStatus.PAYMENT_REQUIRED, message="pay first", amount_msats=21000, bolt11=BOLT11
    )
    parsed = parse_feedback(signed(template, provider))
    assert parsed.request_id == job.id
    assert parsed.provider == provider.public_key
    assert parsed.status is JobStatus.PAYMENT_REQUIRED
    assert parsed.raw_status == "payment-required"
    assert parsed.message == "pay first"
    assert (parsed.amount_msats, parsed.bolt11) == (21000, BOLT11)
    assert (parsed.content, parsed.encrypted) == ("", False)


@pytest.mark.parametrize("scheme", list(EncryptionScheme))
def test_parse_feedback_decrypts_with_the_customer_keys(
    customer: Keys, provider: Keys, scheme: EncryptionScheme
) -> None:
    job = encrypted_job(customer, provider, scheme)
    template = build_feedback(
        job,
        JobStatus.PARTIAL,
        message="half done",
        content="https://x.example/p.png",
        keys=provider,
    )
    event = signed(template, provider)
    parsed = parse_feedback(event, keys=customer)
    assert (parsed.status, parsed.message) == (JobStatus.PARTIAL, "half done")
    assert parsed.content == "https://x.example/p.png"
    assert parsed.encrypted is True
    blind = parse_feedback(event)
    assert (blind.status, blind.message, blind.content) == (JobStatus.PARTIAL, None, "")


def test_parse_feedback_reads_nostrdvm_style_encrypted_feedback(
    customer: Keys, provider: Keys
) -> None:
    # nostrdvm keeps only p and encrypted in the clear; everything else is in the payload.
    from nostr_imagegen.nostr.encryption import encrypt

    request_id = "cd" * 32
    inner = [["e", request_id], ["status", "processing", "working"], ["content", "hi"]]
    content = encrypt(json.dumps(inner), provider, customer.public_key, EncryptionScheme.NIP04)
    tags = (("encrypted",), ("p", customer.public_key))
    event = signed(UnsignedEvent(kind=7000, tags=tags, content=content), provider)
    parsed = parse_feedback(event, keys=customer)
    assert parsed.request_id == request_id
    assert (parsed.status, parsed.message, parsed.content) == (
        JobStatus.PROCESSING,
        "working",
        "hi",
    )


def test_parse_feedback_keeps_unknown_status_words(provider: Keys) -> None:
    tags = (("status", "payment-rejected", "invoice expired\x07"), ("e", "ab" * 32))
    parsed = parse_feedback(signed(UnsignedEvent(kind=7000, tags=tags), provider))
    assert parsed.status is None
    assert parsed.raw_status == "payment-rejected"
    assert parsed.message == "invoice expired"


@pytest.mark.parametrize(
    ("kind", "tags", "match"),
    [
        (7001, (("status", "success"), ("e", "ab" * 32)), "not job feedback"),
        (6100, (("status", "success"), ("e", "ab" * 32)), "not job feedback"),
        (7000, (("e", "ab" * 32),), "status"),
        (7000, (("status", "success"),), "e tag"),
        (7000, (("status", "success"), ("e", "ab" * 32), ("amount", "-5")), "amount"),
        (7000, (("status", "success"), ("e", "ab" * 32), ("amount", "5", "xyz")), "bolt11"),
    ],
)
def test_parse_feedback_refuses_malformed_events(
    provider: Keys, kind: int, tags: tuple[tuple[str, ...], ...], match: str
) -> None:
    with pytest.raises(EventError, match=match):
        parse_feedback(signed(UnsignedEvent(kind=kind, tags=tags), provider))


_text = st.text(max_size=60)
_tag = st.one_of(
    st.lists(_text, max_size=4),
    st.tuples(st.sampled_from(["status", "amount", "e", "encrypted"]), _text, _text).map(list),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_text, tags=st.lists(_tag, max_size=8))
def test_parse_feedback_raises_only_our_errors_and_returns_printable_notes(
    content: str, tags: list[list[str]]
) -> None:
    event = Event.model_construct(
        id="00" * 32,
        pubkey="11" * 32,
        created_at=0,
        kind=7000,
        tags=tuple(tuple(t) for t in [["status", "processing", "x\n\x1b"], *tags]),
        content=content,
        sig="22" * 64,
    )
    try:
        parsed = parse_feedback(event, keys=Keys.generate())
    except NostrImagegenError:
        return
    assert parsed.message is None or parsed.message.isprintable()
    assert parsed.raw_status.isprintable()
