"""The one home of kinds and limits, and every module reading its numbers from it."""

from __future__ import annotations

import pytest

from nostr_imagegen.imagejob import cancellation, handler_info, request, results, tags
from nostr_imagegen.nostr import event, kinds, messages, nip42


@pytest.mark.parametrize(
    ("kind", "request_kind", "result_kind"),
    [
        (4999, False, False),
        (5000, True, False),
        (5999, True, False),
        (6000, False, True),
        (6999, False, True),
        (7000, False, False),
    ],
)
def test_ranges_are_inclusive_of_their_ends_only(
    kind: int, request_kind: bool, result_kind: bool
) -> None:
    assert kinds.is_request_kind(kind) is request_kind
    assert kinds.is_result_kind(kind) is result_kind


def test_the_numbers() -> None:
    assert kinds.IMAGE_GENERATION_KIND == 5100
    assert kinds.IMAGE_RESULT_KIND == 6100
    assert kinds.FEEDBACK_KIND == 7000
    assert kinds.DELETION_KIND == 5
    assert kinds.AUTH_KIND == 22242
    assert kinds.HANDLER_INFO_KIND == 31990
    assert kinds.MAX_MSATS == 21_000_000 * 100_000_000 * 1000
    assert len(str(kinds.MAX_MSATS)) == 19


def test_older_names_are_the_same_objects() -> None:
    assert request.IMAGE_GENERATION_KIND is kinds.IMAGE_GENERATION_KIND
    assert request.REQUEST_KINDS is kinds.REQUEST_KINDS
    assert request.is_request_kind is kinds.is_request_kind
    assert nip42.AUTH_KIND is kinds.AUTH_KIND
    assert cancellation.DELETION_KIND is kinds.DELETION_KIND
    assert handler_info.HANDLER_INFO_KIND is kinds.HANDLER_INFO_KIND
    assert results.HANDLER_INFO_KIND is kinds.HANDLER_INFO_KIND
    assert tags.MAX_MSATS is kinds.MAX_MSATS
    assert event.MAX_EVENT_JSON_BYTES is kinds.MAX_EVENT_JSON_BYTES
    assert messages.MAX_FRAME_BYTES == kinds.MAX_EVENT_JSON_BYTES


def test_result_kind_follows_the_offset() -> None:
    assert results.result_kind_for(kinds.IMAGE_GENERATION_KIND) == kinds.IMAGE_RESULT_KIND
