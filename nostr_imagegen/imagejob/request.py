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

``parse_image_job`` takes the ``Event`` that ``parse_event`` returns (shape, id and signature
checked). Anything else, JSON text or a dict included, is a programming error: it raises
``TypeError`` naming the type, never a refusal the runner would take for a request.

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

from pydantic import ValidationError

from nostr_imagegen.errors import (
    ConfigError,
    JobRejected,
    NostrImagegenError,
    NotForThisProvider,
    UnsupportedKind,
)
from nostr_imagegen.imagejob.model import (
    NAME_PATTERN,
    NAME_RULE,
    EncryptionScheme,
    ExtraParams,
    ImageJob,
    InputType,
    JobInput,
    LoraRequest,
    Ratio,
    is_valid_name,
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
)
from nostr_imagegen.nostr.encryption import decrypt
from nostr_imagegen.nostr.event import Event, Tag
from nostr_imagegen.nostr.kinds import IMAGE_GENERATION_KIND, REQUEST_KINDS, is_request_kind
from nostr_imagegen.nostr.signer import Signer
from nostr_imagegen.nostr.urls import HTTP_SCHEMES, url_problem

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

#: Turns an ``event`` or ``job`` input into a ``text`` or ``url`` input (for example the
#: content of the referenced event, or the image link of a previous job's result).
InputResolver = Callable[[JobInput], JobInput]

_RATIOS = ", ".join(r.value for r in Ratio)
_SIDE = re.compile(r"[0-9]{1,6}")
_SIZE = re.compile(r"([0-9]{1,6})[xX]([0-9]{1,6})")
_INT = re.compile(r"[+-]?[0-9]{1,20}")
# Plain decimals only: no exponents, nan or inf, and bounded length.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")
_UPSCALE = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,6})?)[xX]?")


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


def _accepted_kinds(kinds: Collection[int]) -> frozenset[int]:
    """``kinds`` as a set, each checked to be a job request kind."""
    accepted = frozenset(kinds)
    if not accepted:
        raise ConfigError(f"accepted_kinds is empty: accept at least kind {IMAGE_GENERATION_KIND}")
    wrong = [k for k in accepted if not (isinstance(k, int) and is_request_kind(k))]
    if wrong:
        raise ConfigError(
            f"accepted kinds {sorted(wrong)} are not job request kinds "
            f"({REQUEST_KINDS.start} to {REQUEST_KINDS.stop - 1} inclusive)"
        )
    return accepted


def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__.split(".")[0]
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _too_many_tags(count: int, limits: JobLimits) -> JobRejected:
    return JobRejected(f"the request has {count} tags; at most {limits.max_tags} are read")


def _check_and_group(tags: Sequence[Tag], limits: JobLimits, groups: dict[str, list[Tag]]) -> None:
    """Check each (non-empty) tag, in order, against the bounds on its element count and
    lengths, and file it under its name in ``groups`` (each list keeps the tags' order)."""
    for tag in tags:
        if len(tag) > limits.max_tag_elements:
            raise JobRejected(
                f"a tag has {len(tag)} elements; at most {limits.max_tag_elements} are read",
                tag=clip_tag(tag),
            )
        if max(map(len, tag)) > limits.max_element_chars:
            raise JobRejected(
                f"a tag value is longer than {limits.max_element_chars} characters",
                tag=clip_tag(tag),
            )
        groups.setdefault(tag[0], []).append(tag)


def _providers(tags: Sequence[Tag]) -> tuple[str, ...]:
    keys: list[str] = []
    for tag in tags:
        key = ProviderTag.parse(tag).public_key
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _decrypt_tags(
    event: Event, provider: Signer | None, limits: JobLimits
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


def _bad(param: ParamTag, reason: str) -> JobRejected:
    """The rejection of one param tag, quoting it (clipped)."""
    return JobRejected(reason, clip_tag(param.to_tag()))


def _one_value(param: ParamTag) -> str:
    if len(param.values) != 1:
        raise _bad(param, f"param {param.key!r} takes one value, got {len(param.values)}")
    return param.value


def _name(param: ParamTag, value: str) -> str:
    if not is_valid_name(value):
        raise _bad(
            param,
            f"{param.key} {shorten(value)!r} is not a name this provider offers: {NAME_RULE}, "
            "never a path or a repository",
        )
    return value


def _int(param: ParamTag, low: int, high: int) -> int:
    value = _one_value(param)
    number = int(value) if _INT.fullmatch(value) else None
    if number is None or not low <= number <= high:
        raise _bad(
            param,
            f"{param.key} must be a whole number from {low} to {high}, got {shorten(value)!r}",
        )
    return number


def _decimal(param: ParamTag, value: str, low: float, high: float, what: str = "") -> float:
    number = float(value) if _DECIMAL.fullmatch(value) else math.nan
    if not low <= number <= high:  # NaN fails too
        raise _bad(
            param,
            f"{what or param.key} must be a number from {low:g} to {high:g}, "
            f"got {shorten(value)!r}",
        )
    return number


def _ratio(param: ParamTag, limits: JobLimits) -> Ratio:
    if len(param.values) <= 2:  # "4:3", or "4" and "3"
        try:
            return Ratio(":".join(param.values))
        except ValueError:
            pass
    raise _bad(
        param,
        f"ratio {shorten(' '.join(param.values))!r} is not one of {_RATIOS}; "
        "ask for another shape with size=WxH (for example size=1024x768)",
    )


def _size(param: ParamTag, limits: JobLimits) -> tuple[int, int]:
    values = param.values
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


def _upscale(param: ParamTag, limits: JobLimits) -> float:
    value = _one_value(param)
    match = _UPSCALE.fullmatch(value)
    factor = float(match[1]) if match else math.nan
    if not 1.0 <= factor <= limits.max_upscale:
        raise _bad(
            param,
            f"upscale must be a factor from 1 (none) to {limits.max_upscale:g}, like 2 or 2x; "
            f"got {shorten(value)!r}",
        )
    return factor


def _lora(param: ParamTag, limits: JobLimits) -> LoraRequest:
    if len(param.values) > 2:
        raise _bad(
            param,
            f"a lora param takes a name and an optional weight, got {len(param.values)} values",
        )
    name = _name(param, param.values[0])
    weight = None
    if len(param.values) == 2:
        bound = limits.max_lora_weight
        weight = _decimal(param, param.values[1], -bound, bound, what="lora weight")
    return LoraRequest(name=name, weight=weight)


def _model(param: ParamTag, limits: JobLimits) -> str:
    return _name(param, _one_value(param))


def _negative_prompt(param: ParamTag, limits: JobLimits) -> str | None:
    value = _one_value(param)
    if len(value) > limits.max_prompt_chars:
        raise _bad(param, f"negative_prompt is longer than {limits.max_prompt_chars} characters")
    return value if value.strip() else None


def _seed(param: ParamTag, limits: JobLimits) -> int:
    return _int(param, 0, limits.max_seed)


def _steps(param: ParamTag, limits: JobLimits) -> int:
    return _int(param, 1, limits.max_steps)


def _guidance_scale(param: ParamTag, limits: JobLimits) -> float:
    return _decimal(param, _one_value(param), 0.0, limits.max_guidance_scale)


def _strength(param: ParamTag, limits: JobLimits) -> float:
    strength = _decimal(param, _one_value(param), 0.0, 1.0)
    if strength == 0.0:
        raise _bad(param, "strength must be above 0 (0 would return the input image unchanged)")
    return strength


def _lora_weight(param: ParamTag, limits: JobLimits) -> float:
    bound = limits.max_lora_weight
    return _decimal(param, _one_value(param), -bound, bound)


#: The params given at most once, each with its reader. The keys are ImageJob's field names
#: (``_read_params`` takes out ``lora_weight``, which sets the weight of the loras without one).
_SINGLE_PARAMS: dict[str, Callable[[ParamTag, JobLimits], object]] = {
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


def _read_params(params: Sequence[ParamTag], limits: JobLimits) -> _Params:
    """Interpret the ``param`` tags, in order."""
    single: dict[str, object] = {}
    loras: list[LoraRequest] = []
    extra: dict[str, tuple[str, ...]] = {}
    for param in params:
        read = _SINGLE_PARAMS.get(param.key)
        if read is not None:
            if param.key in single:
                raise _bad(param, f"param {param.key!r} is given more than once")
            single[param.key] = read(param, limits)
        elif param.key == "lora":
            lora = _lora(param, limits)
            if any(known.name == lora.name for known in loras):
                raise _bad(param, f"lora {lora.name!r} is given more than once")
            loras.append(lora)
            if len(loras) > limits.max_loras:
                raise _bad(param, f"at most {limits.max_loras} loras per job")
        else:
            # Not fatal: another provider's extension, or one a later version understands.
            extra[param.key] = extra.get(param.key, ()) + param.values
    if "lora_weight" in single:
        weight = single.pop("lora_weight")
        if not loras:
            weight_param = next(param for param in params if param.key == "lora_weight")
            raise _bad(weight_param, "lora_weight is given without a lora")
        # `lora_weight` applies to every LoRA that does not carry its own weight.
        loras = [
            lora if lora.weight is not None else LoraRequest(name=lora.name, weight=weight)
            for lora in loras
        ]
    return single, tuple(loras), extra


def _resolve(job_input: JobInput, resolver: InputResolver | None) -> JobInput:
    if job_input.type in (InputType.TEXT, InputType.URL):
        return job_input
    if resolver is None:
        raise JobRejected(
            f"input type {job_input.type.value!r} is not supported here: send the prompt as a "
            "text input and the image to alter as a url input",
            clip_tag(job_input.to_tag()),
        )
    resolved = resolver(job_input)
    if not isinstance(resolved, JobInput) or resolved.type not in (InputType.TEXT, InputType.URL):
        raise JobRejected(
            f"the {job_input.type.value} input did not resolve to a text or an image URL",
            clip_tag(job_input.to_tag()),
        )
    return resolved


def _image_url_problem(url: str, earlier: str | None, limits: JobLimits) -> str | None:
    """Why ``url`` cannot be the job's image (``earlier``: the one already read), or None."""
    if earlier is not None:
        return "only one input image (url input) per job is supported"
    if len(url) > limits.max_url_chars:
        return f"the image URL is longer than {limits.max_url_chars} characters"
    problem = url_problem(url, HTTP_SCHEMES, max_chars=limits.max_url_chars)
    return None if problem is None else f"image URL {shorten(url)!r} {problem}"


def _prompt_and_image(
    inputs: Sequence[JobInput], resolver: InputResolver | None, limits: JobLimits
) -> tuple[str, str | None]:
    """The prompt (every text input, in order, joined by newlines) and the one image URL."""
    texts: list[str] = []
    image_url: str | None = None
    for original in inputs:
        job_input = _resolve(original, resolver)
        if job_input.type is InputType.URL:
            problem = _image_url_problem(job_input.data, image_url, limits)
            if problem is not None:
                # The tag quoted is the one received, not what it resolved to.
                raise JobRejected(problem, clip_tag(original.to_tag()))
            image_url = job_input.data
        elif job_input.data.strip():
            texts.append(job_input.data)
    if not texts:
        raise JobRejected('the request has no prompt: add ["i", "<prompt>", "text"]')
    prompt = "\n".join(texts)
    if len(prompt) > limits.max_prompt_chars:
        raise JobRejected(f"the prompt is longer than {limits.max_prompt_chars} characters")
    return prompt, image_url


def _at_most_one(tags: Sequence[Tag], name: str) -> Tag | None:
    """The one tag named ``name``, or None; more than one is rejected."""
    if len(tags) > 1:
        raise JobRejected(f"the request has {len(tags)} {name!r} tags; send one", clip_tag(tags[1]))
    return tags[0] if tags else None


def _relays(tags: Sequence[Tag], limits: JobLimits) -> tuple[str, ...]:
    urls: dict[str, None] = {}  # an ordered set: each URL once, where it first came
    for tag in tags:
        for url in RelaysTag.parse(tag).urls:
            urls[url] = None
        if len(urls) > limits.max_relays:
            raise JobRejected(f"at most {limits.max_relays} relays per job", clip_tag(tag))
    return tuple(urls)


def parse_image_job(
    event: Event,
    *,
    provider: Signer | None = None,
    accepted_kinds: Collection[int] = (IMAGE_GENERATION_KIND,),
    input_resolver: InputResolver | None = None,
    limits: JobLimits = DEFAULT_JOB_LIMITS,
) -> ImageJob:
    """Turn a signed request event (already verified, as ``parse_event`` does) into a job.

    ``event``: the ``Event`` from ``parse_event``; anything else (JSON text, a dict, another
    library's event object, None) raises ``TypeError`` naming its type. ``provider``: this
    service provider's ``Keys`` or other ``Signer``; needed to decrypt encrypted requests and
    to tell jobs addressed to other providers. ``accepted_kinds``: request kinds served (each
    in 5000..5999, default ``(5100,)``; add 5050 for clients that follow the first draft of
    the kind 5100 page). ``input_resolver``: turns `event`/`job` inputs into text or url
    inputs; without one they are rejected.

    Raises ``UnsupportedKind`` or ``NotForThisProvider`` (both ``JobSkipped``: ignore the
    event) or ``JobRejected`` (answer with an `error` feedback quoting ``str(exc)``);
    ``ConfigError`` when ``accepted_kinds`` is not a set of request kinds.
    """
    if not isinstance(event, Event):
        raise TypeError(
            f"parse_image_job() takes a signed Event, got {_type_name(event)}: "
            "pass an Event from parse_event()"
        )
    if provider is not None and not isinstance(getattr(provider, "public_key", None), str):
        raise TypeError(
            f"parse_image_job() takes provider=Keys or another Signer, got {_type_name(provider)}"
        )
    accepted = _accepted_kinds(accepted_kinds)
    if event.kind not in accepted:
        raise UnsupportedKind(event.kind, sorted(accepted))
    clear_tags = [tag for tag in event.tags if tag]  # empty tags name nothing
    if len(clear_tags) > limits.max_tags:
        raise _too_many_tags(len(clear_tags), limits)
    # Every tag by name; then each kind of tag is read in a fixed order, so that a request
    # with several faults always gets the same rejection.
    groups: dict[str, list[Tag]] = {}
    _check_and_group(clear_tags, limits, groups)

    providers = _providers(groups.get(ProviderTag.NAME, []))
    if provider is not None and providers and provider.public_key not in providers:
        raise NotForThisProvider(providers)

    encryption: EncryptionScheme | None = None
    encrypted_tags = groups.get(EncryptedTag.NAME, [])
    if encrypted_tags:
        for tag in encrypted_tags:
            EncryptedTag.parse(tag)
        inner, encryption = _decrypt_tags(event, provider, limits)
        # Addressing stays in the clear tags: `p` or `encrypted` inside the payload mean nothing.
        inner = [t for t in inner if t and t[0] not in (ProviderTag.NAME, EncryptedTag.NAME)]
        if len(clear_tags) + len(inner) > limits.max_tags:
            raise _too_many_tags(len(clear_tags) + len(inner), limits)
        _check_and_group(inner, limits, groups)

    inputs = tuple(InputTag.parse(tag) for tag in groups.get(InputTag.NAME, []))
    prompt, image_url = _prompt_and_image(inputs, input_resolver, limits)
    # Every param tag is checked to have a key and a value before any is read.
    params = [ParamTag.parse(tag) for tag in groups.get(ParamTag.NAME, [])]
    single, loras, extra = _read_params(params, limits)
    output_tag = _at_most_one(groups.get(OutputTag.NAME, []), OutputTag.NAME)
    bid_tag = _at_most_one(groups.get(BidTag.NAME, []), BidTag.NAME)
    bid = BidTag.parse(bid_tag).to_bid() if bid_tag is not None else None
    output = OutputTag.parse(output_tag).mime if output_tag is not None else None
    relays = _relays(groups.get(RelaysTag.NAME, []), limits)

    try:
        job = ImageJob(
            id=event.id,
            customer=event.pubkey,
            kind=event.kind,
            created_at=event.created_at,
            prompt=prompt,
            image_url=image_url,
            loras=loras,
            output=output,
            bid=bid,
            relays=relays,
            providers=providers,
            encryption=encryption,
            inputs=inputs,
            extra_params=ExtraParams(extra),
            request=event,
            **single,
        )
    except ValidationError as exc:  # a bug guard: every value was checked above
        logger.exception("ImageJob rejected values the request parser accepted")
        raise JobRejected("the request could not be read") from exc
    logger.debug("parsed job %s from %s (kind %d)", job.id, job.customer, job.kind)
    return job
