"""nostr_imagegen: build Nostr Data Vending Machines (NIP-90, kind 5100) that generate images.

This package is the pure protocol core: keys and signing, events, job requests, dimensions
and the answer events, with no I/O and no torch. Its public names are the ones ``__all__``
lists below. The other public modules are ``nostr_imagegen.engine`` (diffusers; the
``engine`` extra), ``nostr_imagegen.service`` (relays, runner, hosting; the ``service``
extra) and ``nostr_imagegen.testing`` (tiny offline models). Every other module is internal.

    >>> from nostr_imagegen import Keys, parse_event, parse_image_job
    >>> job = parse_image_job(parse_event(request_json), provider=keys)
    >>> job.prompt, job.ratio, job.size
"""

from nostr_imagegen.errors import EventError, JobRejected, JobSkipped, NostrImagegenError
from nostr_imagegen.imagejob.dimensions import ModelFamily, job_dimensions
from nostr_imagegen.imagejob.model import ImageJob, LoraRequest, Ratio
from nostr_imagegen.imagejob.request import JobLimits, parse_image_job
from nostr_imagegen.imagejob.results import (
    ImageLink,
    JobStatus,
    ParsedFeedback,
    build_feedback,
    build_handler_info,
    build_result,
    parse_cancellation,
    parse_feedback,
    parse_result,
)
from nostr_imagegen.nostr.encryption import EncryptionScheme, decrypt, encrypt
from nostr_imagegen.nostr.event import Event, UnsignedEvent, parse_event, sign_event
from nostr_imagegen.nostr.keys import Keys
from nostr_imagegen.nostr.messages import Filter
from nostr_imagegen.nostr.signer import Signer

__version__ = "0.1.0"

__all__ = [
    "EncryptionScheme",
    "Event",
    "EventError",
    "Filter",
    "ImageJob",
    "ImageLink",
    "JobLimits",
    "JobRejected",
    "JobSkipped",
    "JobStatus",
    "Keys",
    "LoraRequest",
    "ModelFamily",
    "NostrImagegenError",
    "ParsedFeedback",
    "Ratio",
    "Signer",
    "UnsignedEvent",
    "build_feedback",
    "build_handler_info",
    "build_result",
    "decrypt",
    "encrypt",
    "job_dimensions",
    "parse_cancellation",
    "parse_event",
    "parse_feedback",
    "parse_image_job",
    "parse_result",
    "sign_event",
]
