"""The prompt hook: refuse, before any GPU time, prompts the operator does not serve.

A ``PromptPolicy`` is any callable ``policy(job) -> str | None``: None serves the job, a
string refuses it and is the reason the customer reads in the `error` feedback. It sees the
decrypted job (prompt, negative prompt, model, LoRAs), never the raw request.

``WordListPolicy`` is the simple one: a file of words and phrases, one a line (``#``
comments), matched case-insensitively as whole words in the prompt::

    # [policy] prompt_deny_words_file = "denied-words.txt"
    nsfw
    gore
    a famous person's name

The words are not quoted in the refusal: the list is the operator's, not a puzzle to solve.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from nostr_imagegen.errors import ConfigError
from nostr_imagegen.imagejob.model import ImageJob

__all__ = ["PromptPolicy", "WordListPolicy"]

#: The reason a ``WordListPolicy`` gives.
REFUSAL = "this service does not generate images for this prompt"
#: Word lists longer than this are refused (one regular expression holds them all).
MAX_WORDS = 20_000


class PromptPolicy(Protocol):
    """Operator hook: a reason to refuse ``job``'s prompt, or None to serve it."""

    def __call__(self, job: ImageJob) -> str | None: ...


class WordListPolicy:
    """Refuse prompts containing any of ``words`` (whole words, case-insensitive)."""

    def __init__(self, words: Iterable[str], *, reason: str = REFUSAL) -> None:
        cleaned = sorted({" ".join(w.casefold().split()) for w in words if w.strip()}, key=len)
        if len(cleaned) > MAX_WORDS:
            raise ConfigError(f"a prompt word list holds at most {MAX_WORDS} entries")
        self.words = tuple(cleaned)
        self.reason = reason
        # Longest first, so a phrase wins over a word it starts with; \s+ lets a phrase span
        # any whitespace the customer typed.
        alternatives = "|".join(
            r"\s+".join(map(re.escape, word.split())) for word in reversed(cleaned)
        )
        self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if cleaned else None

    @classmethod
    def from_file(cls, path: Path) -> WordListPolicy:
        """Read the words from ``path`` (one a line, ``#`` comments). ``ConfigError`` if not."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the prompt word list {path}: {exc}") from None
        return cls(line.split("#", 1)[0] for line in text.splitlines())

    def __call__(self, job: ImageJob) -> str | None:
        if self._pattern is None or self._pattern.search(job.prompt.casefold()) is None:
            return None
        return self.reason
