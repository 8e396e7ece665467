"""Tiny offline models for tests, demos and benchmarks: no download, the real loaders.

    from nostr_imagegen.testing import build_tiny_lora, build_tiny_pipeline, write_tiny_config

    folder = build_tiny_pipeline(tmp / "tiny")                     # SD 1.5 layout, native 64
    lora = build_tiny_lora(tmp / "lora", folder, seed=1)           # a random UNet LoRA
    write_tiny_config(tmp / "engine.toml", {"tiny": folder}, loras={"noise": lora})

``build_tiny_family(folder, family)`` builds any of the ten families
(``build_tiny_family_lora`` a LoRA for it). Random-weight pipelines (SD 1.5 and SDXL
layouts) saved with ``save_pretrained``, LoRAs in
the diffusers file layout, single-file checkpoints in the original Stable Diffusion layout,
and engine TOML files offering them. Their pictures are noise; they prove the plumbing.
Building one needs the engine extra (torch, diffusers, transformers, peft), imported only when
a builder runs. ``import nostr_imagegen`` never imports this package.
"""

from nostr_imagegen.testing.config import write_tiny_config
from nostr_imagegen.testing.families import build_tiny_family, build_tiny_family_lora
from nostr_imagegen.testing.loras import build_tiny_lora
from nostr_imagegen.testing.pipelines import (
    TINY_NATIVE_SIZE,
    WIDER_NATIVE_SIZE,
    build_tiny_pipeline,
    tiny_tokenizer,
)
from nostr_imagegen.testing.single_file import save_single_file_checkpoint

__all__ = [
    "TINY_NATIVE_SIZE",
    "WIDER_NATIVE_SIZE",
    "build_tiny_family",
    "build_tiny_family_lora",
    "build_tiny_lora",
    "build_tiny_pipeline",
    "save_single_file_checkpoint",
    "tiny_tokenizer",
    "write_tiny_config",
]
