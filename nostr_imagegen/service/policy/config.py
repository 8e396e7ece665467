"""``[policy]``: abuse control. Every rule is off until set::

    [policy]
    max_jobs_per_minute = 5          # per customer key (0: no limit)
    max_jobs_per_day = 200           # per customer key
    max_concurrent_jobs = 2          # per customer: waiting for payment, queued or running
    global_max_jobs_per_minute = 60  # all customers together
    global_max_jobs_per_day = 5000
    allow_list = "allowed-keys.txt"  # only these keys are served (npub or hex, one a line)
    deny_list = "denied-keys.txt"    # these keys are refused; both files are re-read on change
    min_pow_bits = 16                # NIP-13: id difficulty and a committed `nonce` target
    honour_expiration = true         # NIP-40: ignore requests past their `expiration`
    max_age_s = 0                    # ignore requests created longer ago than this
    max_future_s = 0                 # ignore requests created this far in the future
    prompt_deny_words_file = "denied-words.txt"   # the word-list prompt policy

Relative paths are relative to the configuration file. ``honour_expiration`` is the one rule
on by default: NIP-40 says an expired request is not to be acted on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PolicyConfig"]


class PolicyConfig(BaseModel):
    """The ``[policy]`` section (see the module docstring); build the policy with
    ``RequestPolicy(config)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_jobs_per_minute: int = Field(default=0, ge=0, le=1_000_000)
    max_jobs_per_day: int = Field(default=0, ge=0, le=10_000_000)
    max_concurrent_jobs: int = Field(default=0, ge=0, le=10_000)
    global_max_jobs_per_minute: int = Field(default=0, ge=0, le=1_000_000)
    global_max_jobs_per_day: int = Field(default=0, ge=0, le=10_000_000)
    allow_list: Path | None = None
    deny_list: Path | None = None
    min_pow_bits: int = Field(default=0, ge=0, le=64)
    honour_expiration: bool = True
    max_age_s: float = Field(default=0.0, ge=0.0)
    max_future_s: float = Field(default=0.0, ge=0.0)
    prompt_deny_words_file: Path | None = None
    #: How often the list files are checked for changes.
    list_check_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)

    def resolved(self, base: Path) -> PolicyConfig:
        """The same settings with relative file paths made relative to ``base``."""
        update = {
            name: _under(base, getattr(self, name))
            for name in ("allow_list", "deny_list", "prompt_deny_words_file")
            if getattr(self, name) is not None
        }
        return self.model_copy(update=update)


def _under(base: Path, path: Path) -> Path:
    expanded = path.expanduser()
    return expanded if expanded.is_absolute() else (base / expanded).resolve()
