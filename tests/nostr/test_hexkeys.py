"""The one home of hex checks: ids, keys and signatures are whole strings of lowercase hex."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from nostr_imagegen.nostr.hexkeys import Hex64, Hex128, is_hex64, is_hex128

HEX64 = "ab" * 32


@pytest.mark.parametrize("value", [HEX64, "0" * 64, "0123456789abcdef" * 4])
def test_lowercase_hex_of_64_passes(value: str) -> None:
    assert is_hex64(value)


@pytest.mark.parametrize(
    "value",
    [
        HEX64 + "\n",  # `re.match` with `$` would let this through
        "\n" + HEX64,
        HEX64[:-1],
        HEX64 + "a",
        HEX64.upper(),
        "g" * 64,
        " " + HEX64[1:],
        "",
        None,
        64,
        HEX64.encode(),
        "ａ" * 64,  # fullwidth letters are not hex
    ],
)
def test_anything_else_fails(value: object) -> None:
    assert not is_hex64(value)


def test_hex128() -> None:
    assert is_hex128("cd" * 64)
    assert not is_hex128("cd" * 64 + "\n")
    assert not is_hex128(HEX64)


class _Model(BaseModel):
    key: Hex64
    sig: Hex128 | None = None


def test_pydantic_types_match_the_same_rule() -> None:
    assert _Model(key=HEX64, sig="cd" * 64).key == HEX64
    for bad in (HEX64 + "\n", HEX64.upper(), HEX64[:-1]):
        with pytest.raises(ValidationError):
            _Model(key=bad)
    with pytest.raises(ValidationError):
        _Model(key=HEX64, sig="cd" * 64 + "\n")
