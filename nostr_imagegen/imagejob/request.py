"""Parse a signed kind 5100 job request into the frozen, validated ``ImageJob``.

The wire form (NIP-90 + the kind 5100 page; every tag optional except a text input)::

    {"kind": 5100, "content": "", "tags": [
        ["i", "A purple ostrich watching the sunset", "text"],
        ["i", "https://example.com/in.jpg", "url"],
        ["param", "model", "sdxl-turbo"], ["param", "lora", "pixel-art", "0.8"],
        ["param", "ratio", "4:3"], ["param", "size", "1024x768"],
        ["param", "negative_prompt", "broken hands"], ["param", "upscale", "2"],
        ["param", "seed", "42"], ["param", "steps", "30"],
        ["param", "guidance_scale", "7.5"], ["param", "strength", "0.6"],
        ["output", "image/png"], ["bid", "10000"], ["relays", "wss://relay.example"],
        ["p", "<provider pubkey>"]]}

Encrypted form: the tags ``["p", provider]`` and ``["encrypted"]`` in clear, and ``content``
holding the NIP-04 or NIP-44 encryption (to the provider) of a JSON array of the other tags.

The order of checks, each with its own outcome:

1. kind not accepted                      -> ``UnsupportedKind`` (ignore silently)
2. `p` tags name other providers only     -> ``NotForThisProvider`` (ignore silently)
3. anything the provider cannot serve     -> ``JobRejected(reason, tag)`` (answer `error`)

Every input is bounded by ``JobLimits`` before it is looked at closely, so no request can make
parsing slow or large. See docs/job-requests.md for each param and every rejection.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import chain

from pydantic import ValidationError

from nostr_imagegen.errors import (
    ConfigError,
    JobRejected,
    NostrImagegenError,
    NotForThisProvider,
    UnsupportedKind,
)
from nostr_imagegen.imagejob.model import (
    Bid,
    EncryptionScheme,
    ImageJob,
    InputType,
    JobInput,
    LoraRequest,
    Ratio,
    construct_checked,
    construct_filled,
    field_template,
)
from nostr_imagegen.imagejob.tags import (
    BidTag,
    EncryptedTag,
    InputTag,
    OutputTag,
    ParamTag,
    ProviderTag,
    RelaysTag,
    clip_tag,
    shorten,
    validate_url,
)
from nostr_imagegen.nostr.encryption import decrypt
from nostr_imagegen.nostr.event import Event, Tag
from nostr_imagegen.nostr.keys import Keys

__all__ = [
    "DEFAULT_JOB_LIMITS",
    "IMAGE_GENERATION_KIND",
    "NAME_PATTERN",
    "REQUEST_KINDS",
    "InputResolver",
    "JobLimits",
    "is_request_kind",
    "parse_image_job",
]

logger = logging.getLogger(__name__)

#: The kind 5100 page's request kind.
IMAGE_GENERATION_KIND = 5100
#: NIP-90 job request kinds: 5000 up to and including 5999.
REQUEST_KINDS = range(5000, 6000)

#: A model or LoRA name a request may use: a short public name, never a path or a hub repo.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Turns an ``event`` or ``job`` input into a ``text`` or ``url`` input (for example the
#: content of the referenced event, or the image link of a previous job's result).
InputResolver = Callable[[JobInput], JobInput]

# Dict lookups: calling an enum with a value goes through EnumType.__call__, several times slower.
_RATIO_BY_VALUE: dict[str, Ratio] = {r.value: r for r in Ratio}
_RATIOS = ", ".join(r.value for r in Ratio)
_SIDE = re.compile(r"[0-9]{1,6}")
_SIZE = re.compile(r"([0-9]{1,6})[xX]([0-9]{1,6})")
_INT = re.compile(r"[+-]?[0-9]{1,20}")
# Plain decimals only: no exponents, nan or inf, and bounded length.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")
_UPSCALE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,6})?)[xX]?")
_IMAGE_URL_SCHEMES = ("https", "http")
# Enum members read once: reading them from the class costs several dict lookups each time.
_TEXT, _URL = InputType.TEXT, InputType.URL
_TEXT_OR_URL = (_TEXT, _URL)
# The fields parse_image_job fills in on every job; the params take their default otherwise.
_JOB_TEMPLATE = field_template(
    ImageJob,
    filled=(
        "id",
        "customer",
        "kind",
        "created_at",
        "prompt",
        "image_url",
        "loras",
        "output",
        "bid",
        "relays",
        "providers",
        "encryption",
        "inputs",
        "extra_params",
        "request",
    ),
)


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Bounds on a request, checked before its values are interpreted.

    Sizes (defaults in brackets): ``max_tags`` [100] tags in all, clear and decrypted;
    ``max_tag_elements`` [32] strings in one tag; ``max_element_chars`` [8192] characters in
    one string; ``max_prompt_chars`` [4000] for the prompt (text inputs joined) and for the
    negative prompt; ``max_url_chars`` [2048] for an image URL; ``max_loras`` [5];
    ``max_relays`` [20]; ``max_encrypted_chars`` [131072] of encrypted content.

    Values: ``max_steps`` [150] (from 1); ``max_guidance_scale`` [30] (from 0); ``max_seed``
    [2**63 - 1] (from 0; fits torch generators and SQLite integers); ``max_upscale`` [8] (from
    1); ``max_size_side`` [16384] (from 1); LoRA weights within ±``max_lora_weight`` [4].
    These are syntax bounds; what the operator serves is decided later (``DimensionLimits``,
    the model registry).
    """

    max_tags: int = 100
    max_tag_elements: int = 32
    max_element_chars: int = 8192
    max_prompt_chars: int = 4000
    max_url_chars: int = 2048
    max_loras: int = 5
    max_relays: int = 20
    max_encrypted_chars: int = 128 * 1024
    max_steps: int = 150
    max_guidance_scale: float = 30.0
    max_seed: int = 2**63 - 1
    max_upscale: float = 8.0
    max_size_side: int = 16384
    max_lora_weight: float = 4.0


DEFAULT_JOB_LIMITS = JobLimits()


def is_request_kind(kind: int) -> bool:
    """True for the NIP-90 request kinds 5000..5999 (4999 and 6000 are not)."""
    return kind in REQUEST_KINDS


def _check_kinds(kinds: Collection[int]) -> frozenset[int]:
    accepted = frozenset(kinds)
    if not accepted:
        raise ConfigError("accepted_kinds is empty: accept at least kind 5100")
    wrong = sorted(k for k in accepted if not (isinstance(k, int) and is_request_kind(k)))
    if wrong:
        raise ConfigError(
            f"accepted kinds {wrong} are not job request kinds (5000 to 5999 inclusive)"
        )
    return accepted


_DEFAULT_KINDS = (IMAGE_GENERATION_KIND,)
# The last immutable `accepted_kinds` checked and its set: a service passes the same tuple with
# every request, so parse_image_job checks it once. Held by reference, so that its id cannot
# be reused while it is remembered.
_last_kinds: tuple[Collection[int], frozenset[int]] = (_DEFAULT_KINDS, _check_kinds(_DEFAULT_KINDS))


def _accepted(kinds: Collection[int]) -> frozenset[int]:
    """``kinds`` checked, as a set; remembered in ``_last_kinds`` when immutable."""
    global _last_kinds
    accepted = _check_kinds(kinds)
    if type(kinds) is tuple or type(kinds) is frozenset:  # immutable, and so are ints
        _last_kinds = (kinds, accepted)
    return accepted


def _too_many_tags(count: int, limits: JobLimits) -> JobRejected:
    return JobRejected(f"the request has {count} tags; at most {limits.max_tags} are read")


def _check_and_group(tags: Sequence[Tag], limits: JobLimits, groups: dict[str, list[Tag]]) -> None:
    """Check the (non-empty) tags against the size bounds, in order, filing each by name.

    Each list in ``groups`` keeps the order the tags came in.
    """
    max_elements = limits.max_tag_elements
    max_chars = limits.max_element_chars
    # One C-level check passes nearly every request: when all the strings together are
    # short enough, so is each one.
    try:
        all_short = len("".join(chain.from_iterable(tags))) <= max_chars
    except TypeError:  # not all strings: the checks below fail as they always did
        all_short = False
    for tag in tags:
        if len(tag) > max_elements:
            raise JobRejected(
                f"a tag has {len(tag)} elements; at most {max_elements} are read",
                tag=clip_tag(tag),
            )
        if not all_short and max(map(len, tag)) > max_chars:
            raise JobRejected(
                f"a tag value is longer than {max_chars} characters", tag=clip_tag(tag)
            )
        group = groups.get(tag[0])
        if group is None:
            groups[tag[0]] = [tag]
        else:
            group.append(tag)


def _providers(tags: Sequence[Tag]) -> tuple[str, ...]:
    keys: list[str] = []
    for tag in tags:
        key = ProviderTag.public_key_of(tag)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _decrypt_tags(
    event: Event, provider: Keys | None, limits: JobLimits
) -> tuple[list[Tag], EncryptionScheme]:
    """The tags encrypted in ``event.content``, checked to be a bounded list of string lists."""
    marker = EncryptedTag().to_tag()
    if provider is None:
        raise JobRejected(
            "the request is encrypted and this provider has no key to read it", marker
        )
    if len(event.content) > limits.max_encrypted_chars:
        raise JobRejected(
            f"the encrypted content is longer than {limits.max_encrypted_chars} characters", marker
        )
    try:
        plaintext, scheme = decrypt(event.content, provider, event.pubkey)
    except NostrImagegenError as exc:
        raise JobRejected(f"the encrypted request could not be decrypted: {exc}", marker) from exc
    try:
        decoded = json.loads(plaintext)
    except (ValueError, RecursionError):
        raise JobRejected("the decrypted request is not JSON", marker) from None
    if not isinstance(decoded, list) or not all(
        isinstance(tag, list) and all(_is_text(element) for element in tag) for tag in decoded
    ):
        raise JobRejected("the decrypted request must be a JSON array of string arrays", marker)
    return [tuple(tag) for tag in decoded], scheme


def _is_text(value: object) -> bool:
    """A str that is valid Unicode text: JSON escapes can smuggle in lone surrogates, which
    could not be written back out as UTF-8 (clear tags never hold them: the event parser
    refuses them)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The param helpers below take the wire tag itself, ``("param", key, value, ...)``: the
# request's tags are already tuples of strings, so no view object is built per param.


def _bad(param: Tag, reason: str) -> JobRejected:
    """The rejection of one param tag, quoting it (clipped)."""
    return JobRejected(reason, clip_tag(param))


def _one_value(param: Tag) -> str:
    if len(param) != 3:
        raise _bad(param, f"param {param[1]!r} takes one value, got {len(param) - 2}")
    return param[2]


# The readers below say ``param[2] if len(param) == 3 else _one_value(param)``: the same value
# as ``_one_value(param)``, without a call in the usual case.


def _name(param: Tag, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise _bad(
            param,
            f"{param[1]} {shorten(value)!r} is not a name this provider offers: names are up "
            "to 64 letters, digits, '.', '_' or '-', never a path or a repository",
        )
    return value


def _int(param: Tag, low: int, high: int) -> int:
    value = param[2] if len(param) == 3 else _one_value(param)
    if len(value) <= 20 and value.isascii() and value.isdigit():  # [0-9]{1,20}, no regex
        number: int | None = int(value)
    else:
        number = int(value) if _INT.fullmatch(value) else None
    if number is None or not low <= number <= high:
        raise _bad(
            param,
            f"{param[1]} must be a whole number from {low} to {high}, got {shorten(value)!r}",
        )
    return number


def _decimal(param: Tag, value: str, low: float, high: float, what: str = "") -> float:
    number = float(value) if _DECIMAL.fullmatch(value) else math.nan
    if not low <= number <= high:  # NaN fails too
        raise _bad(
            param,
            f"{what or param[1]} must be a number from {low:g} to {high:g}, got {shorten(value)!r}",
        )
    return number


def _ratio(param: Tag, limits: JobLimits) -> Ratio:
    size = len(param)
    if size == 3:
        ratio = _RATIO_BY_VALUE.get(param[2])
    elif size == 4:
        ratio = _RATIO_BY_VALUE.get(f"{param[2]}:{param[3]}")
    else:
        ratio = None
    if ratio is None:
        raise _bad(
            param,
            f"ratio {shorten(' '.join(param[2:]))!r} is not one of {_RATIOS}; "
            "ask for another shape with size=WxH (for example size=1024x768)",
        )
    return ratio


def _size(param: Tag, limits: JobLimits) -> tuple[int, int]:
    values = param[2:]
    match = _SIZE.fullmatch(values[0]) if len(values) == 1 else None
    if match is not None:
        width, height = int(match[1]), int(match[2])
    elif len(values) == 2 and _SIDE.fullmatch(values[0]) and _SIDE.fullmatch(values[1]):
        width, height = int(values[0]), int(values[1])
    else:
        raise _bad(
            param,
            f"size {shorten(' '.join(values))!r} is not WIDTHxHEIGHT in pixels, like 1024x768",
        )
    if not (1 <= width <= limits.max_size_side and 1 <= height <= limits.max_size_side):
        raise _bad(
            param, f"size {width}x{height} must have sides from 1 to {limits.max_size_side} pixels"
        )
    return width, height


def _upscale(param: Tag, limits: JobLimits) -> float:
    value = param[2] if len(param) == 3 else _one_value(param)
    match = _UPSCALE.fullmatch(value)
    factor = float(match[1]) if match else math.nan
    if not 1.0 <= factor <= limits.max_upscale:
        raise _bad(
            param,
            f"upscale must be a factor from 1 (none) to {limits.max_upscale:g}, like 2 or 2x; "
            f"got {shorten(value)!r}",
        )
    return factor


def _lora(param: Tag, limits: JobLimits) -> LoraRequest:
    if len(param) > 4:
        raise _bad(
            param,
            f"a lora param takes a name and an optional weight, got {len(param) - 2} values",
        )
    name = _name(param, param[2])
    weight = None
    if len(param) == 4:
        bound = limits.max_lora_weight
        weight = _decimal(param, param[3], -bound, bound, what="lora weight")
    return construct_checked(LoraRequest, {"name": name, "weight": weight})


def _model(param: Tag, limits: JobLimits) -> str:
    return _name(param, param[2] if len(param) == 3 else _one_value(param))


def _negative_prompt(param: Tag, limits: JobLimits) -> str | None:
    value = param[2] if len(param) == 3 else _one_value(param)
    if len(value) > limits.max_prompt_chars:
        raise _bad(param, f"negative_prompt is longer than {limits.max_prompt_chars} characters")
    return value if value.strip() else None


def _seed(param: Tag, limits: JobLimits) -> int:
    return _int(param, 0, limits.max_seed)


def _steps(param: Tag, limits: JobLimits) -> int:
    return _int(param, 1, limits.max_steps)


def _guidance_scale(param: Tag, limits: JobLimits) -> float:
    value = param[2] if len(param) == 3 else _one_value(param)
    return _decimal(param, value, 0.0, limits.max_guidance_scale)


def _strength(param: Tag, limits: JobLimits) -> float:
    strength = _decimal(param, param[2] if len(param) == 3 else _one_value(param), 0.0, 1.0)
    if strength == 0.0:
        raise _bad(param, "strength must be above 0 (0 would return the input image unchanged)")
    return strength


def _lora_weight(param: Tag, limits: JobLimits) -> float:
    bound = limits.max_lora_weight
    return _decimal(param, _one_value(param), -bound, bound)


#: The params given at most once, each with its reader. The keys are ImageJob's field names
#: (``_read_params`` takes out ``lora_weight``, which sets the weight of the loras without one).
_SINGLE_PARAMS: dict[str, Callable[[Tag, JobLimits], object]] = {
    "model": _model,
    "ratio": _ratio,
    "size": _size,
    "negative_prompt": _negative_prompt,
    "upscale": _upscale,
    "seed": _seed,
    "steps": _steps,
    "guidance_scale": _guidance_scale,
    "strength": _strength,
    "lora_weight": _lora_weight,
}

#: What ``_read_params`` returns: the single params' values by ImageJob field name, the loras,
#: and the params this library does not interpret (``{key: (values...)}``).
_Params = tuple[dict[str, object], tuple[LoraRequest, ...], dict[str, tuple[str, ...]]]


def _read_params(params: Sequence[Tag], limits: JobLimits) -> _Params:
    """Interpret the ``param`` tags, in order; each has a key and at least one value."""
    single: dict[str, object] = {}
    loras: list[LoraRequest] = []
    extra: dict[str, tuple[str, ...]] = {}
    for param in params:
        key = param[1]
        read = _SINGLE_PARAMS.get(key)
        if read is not None:
            if key in single:
                raise _bad(param, f"param {key!r} is given more than once")
            single[key] = read(param, limits)
        elif key == "lora":
            lora = _lora(param, limits)
            if loras and any(known.name == lora.name for known in loras):
                raise _bad(param, f"lora {lora.name!r} is given more than once")
            loras.append(lora)
            if len(loras) > limits.max_loras:
                raise _bad(param, f"at most {limits.max_loras} loras per job")
        else:
            # Not fatal: another provider's extension, or one a later version understands.
            extra[key] = extra.get(key, ()) + tuple(param[2:])
    if "lora_weight" in single:
        weight = single.pop("lora_weight")
        if not loras:
            weight_param = next(param for param in params if param[1] == "lora_weight")
            raise _bad(weight_param, "lora_weight is given without a lora")
        # `lora_weight` applies to every LoRA that does not carry its own weight.
        loras = [
            lora
            if lora.weight is not None
            else construct_checked(LoraRequest, {"name": lora.name, "weight": weight})
            for lora in loras
        ]
    return single, tuple(loras), extra


def _resolve(job_input: JobInput, resolver: InputResolver | None) -> JobInput:
    if job_input.type in _TEXT_OR_URL:
        return job_input
    if resolver is None:
        raise JobRejected(
            f"input type {job_input.type.value!r} is not supported here: send the prompt as a "
            "text input and the image to alter as a url input",
            clip_tag(job_input.to_tag()),
        )
    resolved = resolver(job_input)
    if not isinstance(resolved, JobInput) or resolved.type not in _TEXT_OR_URL:
        raise JobRejected(
            f"the {job_input.type.value} input did not resolve to a text or an image URL",
            clip_tag(job_input.to_tag()),
        )
    return resolved


def _prompt_and_image(
    input_tags: Sequence[Tag],
    inputs: Sequence[JobInput],
    resolver: InputResolver | None,
    limits: JobLimits,
) -> tuple[str, str | None]:
    """The prompt (every text input, in order, joined by newlines) and the one image URL.

    ``inputs`` are the parsed ``input_tags``.
    """
    if len(input_tags) == 1 and input_tags[0][2] == "text":  # the usual: one text prompt
        prompt = input_tags[0][1]
        if prompt.strip() and len(prompt) <= limits.max_prompt_chars:
            return prompt, None  # else the loop below says what is wrong
    texts: list[str] = []
    image_url: str | None = None
    for original in inputs:
        job_input = original if original.type is _TEXT else _resolve(original, resolver)
        if job_input.type is _URL:
            # The tag quoted by a rejection is the one received, not what it resolved to.
            tag = original.to_tag()
            if image_url is not None:
                raise JobRejected(
                    "only one input image (url input) per job is supported", clip_tag(tag)
                )
            if len(job_input.data) > limits.max_url_chars:
                raise JobRejected(
                    f"the image URL is longer than {limits.max_url_chars} characters",
                    clip_tag(tag),
                )
            image_url = validate_url(job_input.data, _IMAGE_URL_SCHEMES, "image URL", tag)
        elif job_input.data.strip():
            texts.append(job_input.data)
    if not texts:
        raise JobRejected('the request has no prompt: add ["i", "<prompt>", "text"]')
    prompt = texts[0] if len(texts) == 1 else "\n".join(texts)
    if len(prompt) > limits.max_prompt_chars:
        raise JobRejected(f"the prompt is longer than {limits.max_prompt_chars} characters")
    return prompt, image_url


def _more_than_one(tags: Sequence[Tag], name: str) -> JobRejected:
    return JobRejected(f"the request has {len(tags)} {name!r} tags; send one", clip_tag(tags[1]))


def _relays(tags: Sequence[Tag], limits: JobLimits) -> tuple[str, ...]:
    urls: dict[str, None] = {}  # an ordered set: each URL once, where it first came
    for tag in tags:
        for url in RelaysTag.urls_of(tag):
            urls[url] = None
        if len(urls) > limits.max_relays:
            raise JobRejected(f"at most {limits.max_relays} relays per job", clip_tag(tag))
    return tuple(urls)


_NO_TAGS: tuple[Tag, ...] = ()


def parse_image_job(
    event: Event,
    *,
    provider: Keys | None = None,
    accepted_kinds: Collection[int] = _DEFAULT_KINDS,
    input_resolver: InputResolver | None = None,
    limits: JobLimits = DEFAULT_JOB_LIMITS,
) -> ImageJob:
    """Turn a signed request event (already verified, as ``parse_event`` does) into a job.

    ``provider``: this service provider's keys; needed to decrypt encrypted requests and to
    tell jobs addressed to other providers. ``accepted_kinds``: request kinds served (each in
    5000..5999, default ``(5100,)``; add 5050 for clients that follow the first draft of the
    kind 5100 page). ``input_resolver``: turns `event`/`job` inputs into text or url inputs;
    without one they are rejected.

    Raises ``UnsupportedKind`` or ``NotForThisProvider`` (both ``JobSkipped``: ignore the
    event) or ``JobRejected`` (answer with an `error` feedback quoting ``str(exc)``);
    ``ConfigError`` when ``accepted_kinds`` is not a set of request kinds.
    """
    last_kinds = _last_kinds  # (the usual `accepted_kinds`, its checked set)
    accepted = last_kinds[1] if accepted_kinds is last_kinds[0] else _accepted(accepted_kinds)
    if event.kind not in accepted:
        raise UnsupportedKind(event.kind, sorted(accepted))
    clear_tags: Sequence[Tag] = event.tags
    if not all(clear_tags):
        clear_tags = list(filter(None, clear_tags))  # empty tags name nothing
    if len(clear_tags) > limits.max_tags:
        raise _too_many_tags(len(clear_tags), limits)
    # Every tag by name, in one pass; then each kind of tag is read in a fixed order, so that
    # a request with several faults always gets the same rejection.
    groups: dict[str, list[Tag]] = {}
    _check_and_group(clear_tags, limits, groups)

    p_tags = groups.get(ProviderTag.NAME)
    providers = _providers(p_tags) if p_tags else ()
    if provider is not None and providers and provider.public_key not in providers:
        raise NotForThisProvider(providers)

    encryption: EncryptionScheme | None = None
    encrypted_tags = groups.get(EncryptedTag.NAME)
    if encrypted_tags:
        for tag in encrypted_tags:
            EncryptedTag.parse(tag)
        inner, encryption = _decrypt_tags(event, provider, limits)
        # Addressing stays in the clear tags: `p` or `encrypted` inside the payload mean nothing.
        inner = [t for t in inner if t and t[0] not in (ProviderTag.NAME, EncryptedTag.NAME)]
        if len(clear_tags) + len(inner) > limits.max_tags:
            raise _too_many_tags(len(clear_tags) + len(inner), limits)
        _check_and_group(inner, limits, groups)

    input_tags = groups.get(InputTag.NAME, _NO_TAGS)
    if len(input_tags) == 1:  # the usual request (tuple(map(...)) costs more for one)
        inputs: tuple[JobInput, ...] = (InputTag.parse(input_tags[0]),)
    else:
        inputs = tuple(map(InputTag.parse, input_tags))
    prompt, image_url = _prompt_and_image(input_tags, inputs, input_resolver, limits)
    param_tags = groups.get(ParamTag.NAME, _NO_TAGS)
    for tag in param_tags:  # all before any is read: each needs a key and a value
        if len(tag) < 3:
            ParamTag.parse(tag)  # raises, naming what is missing
    single, loras, extra = _read_params(param_tags, limits)
    output_tags = groups.get(OutputTag.NAME)
    if output_tags and len(output_tags) > 1:
        raise _more_than_one(output_tags, OutputTag.NAME)
    bid_tags = groups.get(BidTag.NAME)
    if bid_tags and len(bid_tags) > 1:
        raise _more_than_one(bid_tags, BidTag.NAME)
    bid: Bid | None = BidTag.bid_of(bid_tags[0]) if bid_tags else None
    output = OutputTag.mime_of(output_tags[0]) if output_tags else None
    relay_tags = groups.get(RelaysTag.NAME)
    relays = _relays(relay_tags, limits) if relay_tags else ()

    # Every value was checked above, so no second validation.
    values = _JOB_TEMPLATE.copy()  # every field, in order; the params at their default
    values.update(single)  # the params read, by field name
    values["id"] = event.id
    values["customer"] = event.pubkey
    values["kind"] = event.kind
    values["created_at"] = event.created_at
    values["prompt"] = prompt
    values["image_url"] = image_url
    values["loras"] = loras
    values["output"] = output
    values["bid"] = bid
    values["relays"] = relays
    values["providers"] = providers
    values["encryption"] = encryption
    values["inputs"] = inputs
    values["extra_params"] = extra
    values["request"] = event
    try:
        job = construct_filled(ImageJob, values)
    except ValidationError as exc:  # only when construct_checked validates; a bug guard
        logger.exception("ImageJob rejected values the request parser accepted")
        raise JobRejected("the request could not be read") from exc
    if logger.isEnabledFor(logging.DEBUG):  # spares reading the arguments otherwise
        logger.debug("parsed job %s from %s (kind %d)", job.id, job.customer, job.kind)
    return job
