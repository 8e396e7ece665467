"""Fixtures shared by the service tests: a fresh ledger file and the in-memory relay pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_fakes import FakePool

from nostr_imagegen.service.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


@pytest.fixture
def pool() -> FakePool:
    return FakePool()
