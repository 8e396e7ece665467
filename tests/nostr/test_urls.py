"""The one home of URL checks: relay (ws/wss) and image (http/https) URLs."""

from __future__ import annotations

import pytest

from nostr_imagegen.nostr.urls import (
    HTTP_SCHEMES,
    MAX_URL_CHARS,
    RELAY_SCHEMES,
    is_url,
    url_problem,
)


@pytest.mark.parametrize(
    "url",
    [
        "wss://relay.example",
        "ws://127.0.0.1:7777",
        "WSS://Relay.Example/path?x=1#f",
        "wss://[::1]:7777/",
        "wss://a.example:65535",
    ],
)
def test_relay_urls_pass(url: str) -> None:
    assert url_problem(url, RELAY_SCHEMES) is None
    assert is_url(url, RELAY_SCHEMES)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://relay.example", "must start with wss:// or ws://"),
        ("relay.example", "must start with wss:// or ws://"),
        ("wss://", "has no host"),
        ("wss://:80", "has no host"),
        ("wss://relay.example:99999", "is not a valid URL"),
        ("wss://relay.example:port", "is not a valid URL"),
        ("wss://[::1", "is not a valid URL"),
        ("wss://relay.example/ x", "whitespace"),
        ("wss://relay.example\n", "whitespace"),
        ("wss://relay.example/\x00", "control"),
        ("wss://rélay.example", "non-ASCII"),
        ("", "is empty"),
        ("wss://" + "r" * MAX_URL_CHARS, f"longer than {MAX_URL_CHARS}"),
    ],
)
def test_relay_url_problems_are_named(url: str, problem: str) -> None:
    found = url_problem(url, RELAY_SCHEMES)
    assert found is not None
    assert problem in found
    assert not is_url(url, RELAY_SCHEMES)


def test_not_a_string() -> None:
    assert url_problem(None, RELAY_SCHEMES) == "is not a string but NoneType"
    assert url_problem(b"wss://relay.example", RELAY_SCHEMES) is not None


def test_http_schemes_for_images() -> None:
    assert is_url("https://image.example/a.png", HTTP_SCHEMES)
    assert is_url("http://image.example/a.png", HTTP_SCHEMES)
    for url in ("file:///etc/passwd", "javascript:alert(1)", "data:image/png;base64,AA"):
        assert url_problem(url, HTTP_SCHEMES) == "must start with https:// or http://"


def test_length_bound_is_the_callers_choice() -> None:
    url = "https://a.example/" + "x" * 3000
    assert not is_url(url, HTTP_SCHEMES)
    assert is_url(url, HTTP_SCHEMES, max_chars=4096)
    assert is_url("https://a.example/" + "x" * (MAX_URL_CHARS - 18), HTTP_SCHEMES)
