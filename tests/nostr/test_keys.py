"""Keys: loading, the secret never shown, and errors that say what is wrong."""

from __future__ import annotations

import pickle

import pytest

from nostr_imagegen.errors import KeyFormatError
from nostr_imagegen.nostr.keys import Keys, normalize_public_key

SECRET = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


def test_repr_and_str_never_show_the_secret() -> None:
    keys = Keys.from_hex(SECRET)
    for text in (repr(keys), str(keys), f"{keys}", repr([keys]), repr({"k": keys})):
        assert SECRET not in text
        assert keys.nsec() not in text
        assert keys.public_key in text


def test_keys_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Keys.from_hex(SECRET))


def test_loading_forms_agree() -> None:
    keys = Keys.from_hex(SECRET)
    assert Keys.from_hex(SECRET.upper()) == keys
    assert Keys.from_hex(f"  {SECRET}\n") == keys
    assert Keys.parse(SECRET) == keys
    assert Keys.parse(keys.nsec()) == keys
    assert Keys.from_nsec(keys.nsec()).secret_hex() == SECRET
    assert normalize_public_key(keys.npub) == keys.public_key
    assert normalize_public_key(keys.public_key.upper()) == keys.public_key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "64 hex characters"),
        ("ab" * 31, "64 hex characters"),
        ("zz" * 32, "64 hex characters"),
        ("00" * 32, "out of range"),
        ("ff" * 32, "out of range"),
        ("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", "out of range"),
    ],
)
def test_from_hex_errors(value: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        Keys.from_hex(value)
    with pytest.raises(KeyFormatError, match=message):
        Keys.parse(value)


def test_from_nsec_errors() -> None:
    with pytest.raises(KeyFormatError, match="invalid nsec"):
        Keys.from_nsec("nsec1notreallyansec")
    with pytest.raises(KeyFormatError, match="invalid nsec"):
        Keys.parse("nsec1" + "q" * 58)


def test_non_string_input_is_a_key_format_error() -> None:
    with pytest.raises(KeyFormatError):
        Keys.from_hex(None)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        normalize_public_key(123)  # type: ignore[arg-type]


def test_shared_x_is_symmetric_and_unhashed() -> None:
    alice, bob = Keys.generate(), Keys.generate()
    shared = alice.shared_x(bob.public_key)
    assert shared == bob.shared_x(alice.npub)
    assert len(shared) == 32
    # With the secret 1 the shared point is the peer's own point: x is the peer's key.
    one = Keys.from_hex("00" * 31 + "01")
    assert one.shared_x(bob.public_key).hex() == bob.public_key
