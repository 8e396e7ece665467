"""GPU check: seconds per image and peak GPU memory for a few families at real sizes, with
each memory and speed option of ``[models.X]``, and a batch of N images vs. N single jobs.

    OUT=/tmp/out benchmarks/gpu_check.sh          # or: python benchmarks/gpu_check.py --out DIR

No hub is reachable where this runs, so each model is built in memory from its real
architecture (SD 1.5 and SDXL UNets, the FLUX.1-dev transformer, their VAEs) with random
weights. The text encoders are left out and the prompt embeddings are random tensors of the
real shapes: text encoding is a small part of a job, and leaving it out keeps the run within
its budget. Each option is applied through ``nostr_imagegen.engine.memory.place_and_tune``,
the code ``Engine`` runs on load; the batch through the same call ``Engine`` makes (one call,
one generator per image). Quantized loading goes through ``from_pretrained`` from disk,
which these in-memory models skip; it is reported as not measured here.

Every case is timed after one warm-up call (compile: the warm-up is the compile), with
``torch.cuda.synchronize``; peak memory is ``torch.cuda.max_memory_allocated`` over the
timed call. A case that fails is reported with its error and the run goes on; cases past
``--budget-s`` are skipped and reported as such. Results: ``gpu_check.json`` and
``gpu_check.txt`` in ``--out``, and the table on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "vae_tiling+slicing": {"vae_tiling": True, "vae_slicing": True},
    "attention native": {"attention_backend": "native"},
    "compile": {"compile": True},
    "offload model": {"offload": "model"},
    "offload sequential": {"offload": "sequential"},
}


def sd_vae(latent_channels: int = 4, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=latent_channels,
        **extra,
    )


def build(family: str, dtype: Any) -> tuple[Any, dict[str, Any]]:
    """A pipeline of ``family`` at its real size (random weights, no text encoders) and the
    call arguments of one job (random prompt embeddings of the real shapes)."""
    import diffusers
    import torch

    with torch.device("cuda"):
        if family == "sd15":
            unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
            pipe = diffusers.StableDiffusionPipeline(
                vae=sd_vae(), text_encoder=None, tokenizer=None, unet=unet,
                scheduler=diffusers.EulerDiscreteScheduler(), safety_checker=None,
                feature_extractor=None, requires_safety_checker=False,
            )  # fmt: skip
            embeds = {"prompt_embeds": torch.randn(1, 77, 768), "negative_prompt_embeds":
                      torch.randn(1, 77, 768)}  # fmt: skip
            size, guidance = 512, 7.5
        elif family == "sdxl":
            unet = diffusers.UNet2DConditionModel(
                sample_size=128,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=(320, 640, 1280),
                transformer_layers_per_block=(1, 2, 10),
                attention_head_dim=(5, 10, 20),
                cross_attention_dim=2048,
                addition_embed_type="text_time",
                addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816,
                use_linear_projection=True,
            )
            pipe = diffusers.StableDiffusionXLPipeline(
                vae=sd_vae(), text_encoder=None, text_encoder_2=None, tokenizer=None,
                tokenizer_2=None, unet=unet, scheduler=diffusers.EulerDiscreteScheduler(),
            )  # fmt: skip
            embeds = {
                "prompt_embeds": torch.randn(1, 77, 2048),
                "negative_prompt_embeds": torch.randn(1, 77, 2048),
                "pooled_prompt_embeds": torch.randn(1, 1280),
                "negative_pooled_prompt_embeds": torch.randn(1, 1280),
            }
            size, guidance = 1024, 5.0
        elif family == "flux":
            transformer = diffusers.FluxTransformer2DModel(guidance_embeds=True)
            vae = sd_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                         use_post_quant_conv=False)  # fmt: skip
            pipe = diffusers.FluxPipeline(
                scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0,
                                                                    use_dynamic_shifting=True),
                vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
                tokenizer_2=None, transformer=transformer,
            )  # fmt: skip
            embeds = {"prompt_embeds": torch.randn(1, 512, 4096),
                      "pooled_prompt_embeds": torch.randn(1, 768)}  # fmt: skip
            size, guidance = 1024, 3.5
        else:
            raise ValueError(family)
    pipe.to("cuda", dtype)
    embeds = {key: value.to("cuda", dtype) for key, value in embeds.items()}
    pipe.set_progress_bar_config(disable=True)
    call = {"width": size, "height": size, "guidance_scale": guidance, **embeds}
    return pipe, call


def run_case(pipe: Any, call: dict[str, Any], steps: int, images: int) -> dict[str, float]:
    import torch

    from nostr_imagegen.engine.batch import generators, image_seeds

    def once(count: int) -> float:
        kwargs = dict(call)
        kwargs.update(
            num_inference_steps=steps, num_images_per_prompt=count, output_type="pil",
            generator=generators("cuda", image_seeds(1, count)),
        )  # fmt: skip
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(**kwargs)
        torch.cuda.synchronize()
        return time.perf_counter() - started

    once(images)  # warm-up (and the compile, for the compile case)
    torch.cuda.reset_peak_memory_stats()
    elapsed = once(images)
    return {
        "seconds_per_image": elapsed / images,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--families", default="sd15,sdxl,flux")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=420.0)
    args = parser.parse_args()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this check needs one", file=sys.stderr)
        return 2
    from nostr_imagegen.engine.memory import place_and_tune
    from nostr_imagegen.engine_config import ModelConfig

    device = torch.cuda.get_device_name(0)
    rows: list[dict[str, Any]] = []
    table = [f"device: {device}; {args.steps} steps; random weights at real sizes"]
    for family in args.families.split(","):
        dtype = torch.bfloat16 if family == "flux" else torch.float16
        cases = [(name, options, 1) for name, options in OPTIONS.items()]
        cases.append((f"batch of {args.batch} (one call)", {}, args.batch))
        baseline: float | None = None
        for name, options, images in cases:
            row: dict[str, Any] = {"family": family, "case": name, "images": images}
            if time.monotonic() - started > args.budget_s:
                row["skipped"] = "time budget spent"
                rows.append(row)
                continue
            pipe = None
            try:
                pipe, call = build(family, dtype)
                config = ModelConfig(source="in-memory", family=family, **options)
                if options.get("offload"):
                    pipe.to("cpu")
                place_and_tune(pipe, config, "cuda")
                row.update(run_case(pipe, call, args.steps, images))
                if name == "baseline":
                    baseline = row["seconds_per_image"]
                if baseline:
                    row["vs_baseline"] = row["seconds_per_image"] / baseline
            except Exception as exc:  # report the case, go on with the next
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                traceback.print_exc()
            finally:
                del pipe
                gc.collect()
                torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
        rows.append({"family": family, "case": "quantization (bnb-4bit, torchao, gguf)",
                     "skipped": "needs from_pretrained from disk; not measured here"})  # fmt: skip
    for row in rows:
        if "seconds_per_image" in row:
            ratio = f"  x{row['vs_baseline']:.2f}" if "vs_baseline" in row else ""
            table.append(
                f"{row['family']:5} {row['case']:28} {row['seconds_per_image']:7.3f} s/image "
                f"{row['peak_gib']:6.2f} GiB peak{ratio}"
            )
        else:
            table.append(f"{row['family']:5} {row['case']:28} {row.get('error') or row['skipped']}")
    text = "\n".join(table)
    print(text)
    (args.out / "gpu_check.txt").write_text(text + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
