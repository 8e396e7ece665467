"""Shared fixtures.

``vectors_dir``: the official known-answer vectors, kept outside the repository in the
``shared/vectors`` folder beside it (they are never copied in). Tests that need them are
skipped, with the path in the reason, where that folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors").resolve()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The folder holding nostr-vectors.json, nip44.vectors.json and the BIP-340 csv."""
    if not VECTORS_DIR.is_dir():
        pytest.skip(f"official test vectors not found at {VECTORS_DIR}")
    return VECTORS_DIR
