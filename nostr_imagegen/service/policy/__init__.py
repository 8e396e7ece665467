"""Abuse control for a public DVM: the ``[policy]`` rules (see ``gate`` for their order).

policy = RequestPolicy(PolicyConfig(max_jobs_per_minute=5, min_pow_bits=16))
runner = JobRunner(..., policy=policy)
"""

from nostr_imagegen.service.policy.config import PolicyConfig
from nostr_imagegen.service.policy.gate import Refusal, RequestPolicy
from nostr_imagegen.service.policy.prompt import PromptPolicy, WordListPolicy

__all__ = ["PolicyConfig", "PromptPolicy", "Refusal", "RequestPolicy", "WordListPolicy"]
