"""GPU check: seconds per image and peak GPU memory for a few families at real sizes, with
each memory and speed option of ``[models.X]``, a batch of N images vs. N single jobs, and
batches of 1/2/4/8 jobs through ``Engine.generate_batch``.

    OUT=/tmp/out benchmarks/gpu_check.sh          # or: python benchmarks/gpu_check.py --out DIR
    python benchmarks/gpu_check.py --smoke --out /tmp/smoke   # the batching section on the CPU

No hub is reachable where this runs, so each model is built in memory from its real
architecture (SD 1.5 and SDXL UNets, the FLUX.1-dev transformer, their VAEs) with random
weights. The text encoders are left out and the prompt embeddings are random tensors of the
real shapes: text encoding is a small part of a job, and leaving it out keeps the run within
its budget. Each option is applied through ``nostr_imagegen.engine.memory.place_and_tune``,
the code ``Engine`` runs on load; the batch through the same call ``Engine`` makes (one call,
one generator per image). Quantized loading goes through ``from_pretrained`` from disk,
which these in-memory models skip; it is reported as not measured here.

Batching (run first, section ``batching``): SD 1.5 at 512 and SDXL at 1024 with their real
UNets, VAEs and CLIP text encoders (random weights; the byte-level test tokenizer of
``nostr_imagegen.testing``, so prompts are tokenized and encoded as in a real job), served by
a real ``Engine`` whose loader hands it that pipeline: B compatible jobs (own prompts and
seeds) per ``Engine.generate_batch`` call, for each B of ``--batch-sizes``: images per second
and peak memory, and images per second against B = 1. ``--smoke`` runs this section on the
CPU with the tiny test models (what can be checked without a GPU; its figures mean nothing).

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


#: Real CLIP text encoder sizes: (hidden, layers, heads, intermediate, activation).
TEXT_ENCODERS: dict[str, list[tuple[int, int, int, int, str]]] = {
    "sd15": [(768, 12, 12, 3072, "quick_gelu")],  # CLIP ViT-L/14
    "sdxl": [(768, 12, 12, 3072, "quick_gelu"), (1280, 32, 20, 5120, "gelu")],  # + bigG
}


def text_parts(family: str) -> dict[str, Any]:
    """The text encoders and tokenizers of ``family`` at their real sizes, random weights,
    over the byte-level test tokenizer (its vocabulary is the only thing smaller)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nostr_imagegen.testing import tiny_tokenizer

    parts: dict[str, Any] = {}
    encoders = TEXT_ENCODERS[family]
    for index, (hidden, layers, heads, intermediate, activation) in enumerate(encoders):
        tokenizer = tiny_tokenizer()
        config = CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=intermediate, hidden_act=activation,
            max_position_embeddings=77, projection_dim=1280, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        # SDXL's second encoder gives the pooled, projected embedding.
        last = index == len(encoders) - 1 and len(encoders) > 1
        suffix = "_2" if index else ""
        parts[f"text_encoder{suffix}"] = (
            CLIPTextModelWithProjection(config) if last else CLIPTextModel(config)
        )
        parts[f"tokenizer{suffix}"] = tokenizer
    return parts


def build_with_text(family: str, dtype: Any) -> tuple[Any, int]:
    """The pipeline of ``build`` with its real text encoders, and its image side."""
    import torch

    pipe, call = build(family, dtype)
    with torch.device("cuda"):
        parts = text_parts(family)
    pipe.register_modules(**parts)
    pipe.to("cuda", dtype)
    return pipe, call["width"]


def batching_engine(family: str, pipe: Any, size: int, steps: int, device: str, dtype: Any) -> Any:
    """A real ``Engine`` serving ``pipe`` as model ``family`` (its loader returns it)."""
    from nostr_imagegen.engine import Engine, EngineConfig

    config = EngineConfig.from_mapping(
        {
            "models": {
                family: {
                    "source": "in-memory", "family": family, "native_size": size,
                    "steps": steps, "max_batch": 16,
                }
            },
            "limits": {"max_pixels": max(size * size, 1024 * 1024)},
            "device": device,
        }
    )  # fmt: skip
    return Engine(config, device=device, dtype=dtype, loader=lambda *_: pipe)


def batch_jobs(family: str, size: int, count: int) -> list[Any]:
    """``count`` compatible jobs of ``family`` (same size and steps), each its own prompt
    and seed, parsed from signed requests as a DVM gets them."""
    from nostr_imagegen.engine import BatchRequest
    from nostr_imagegen.imagejob.request import parse_image_job
    from nostr_imagegen.nostr.event import UnsignedEvent, sign_event
    from nostr_imagegen.nostr.keys import Keys

    customer = Keys.generate()
    requests = []
    for index in range(count):
        tags = (
            ("i", f"a lighthouse in a storm, plate {index}", "text"),
            ("param", "model", family),
            ("param", "size", f"{size}x{size}"),
            ("param", "seed", str(1000 + index)),
        )
        event = sign_event(UnsignedEvent(kind=5100, tags=tags), customer)
        requests.append(BatchRequest(parse_image_job(event)))
    return requests


def run_batch_case(engine: Any, family: str, size: int, count: int, cuda: bool) -> dict[str, Any]:
    """One warm-up ``generate_batch`` of ``count`` jobs, then one timed: images/s, peak."""
    import torch

    from nostr_imagegen.engine import GenerationResult

    def once() -> float:
        requests = batch_jobs(family, size, count)
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        outcomes = engine.generate_batch(requests)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        for outcome in outcomes:
            if not isinstance(outcome, GenerationResult):
                raise outcome
        return elapsed

    once()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    elapsed = once()
    return {
        "images_per_s": count / elapsed,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def tiny_pipeline(family: str, folder: Path) -> Any:
    """For ``--smoke``: the tiny test model of ``family``, saved and loaded by the real loader."""
    import torch

    from nostr_imagegen.engine.pipelines import load_pipeline
    from nostr_imagegen.engine_config import ModelConfig
    from nostr_imagegen.imagejob.dimensions import ModelFamily
    from nostr_imagegen.testing import build_tiny_pipeline

    build_tiny_pipeline(folder, ModelFamily(family))
    return load_pipeline(ModelConfig(source=str(folder), family=family), "cpu", torch.float32)


def batching_rows(
    args: argparse.Namespace, started: float, *, smoke: bool = False
) -> list[dict[str, Any]]:
    """The batching section: for SD 1.5 and SDXL, each batch size of ``--batch-sizes``."""
    import tempfile

    import torch

    rows: list[dict[str, Any]] = []
    counts = [int(part) for part in args.batch_sizes.split(",")]
    device, dtype = ("cpu", torch.float32) if smoke else ("cuda", torch.float16)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for family in ("sd15", "sdxl"):
            if smoke:
                pipe, size = tiny_pipeline(family, Path(tmp) / family), 64
            else:
                pipe, size = build_with_text(family, dtype)
            engine = batching_engine(family, pipe, size, args.steps, device, dtype)
            single: float | None = None
            for count in counts:
                row: dict[str, Any] = {"family": family, "case": f"generate_batch of {count}",
                                       "images": count}  # fmt: skip
                if time.monotonic() - started > args.budget_s:
                    row["skipped"] = "time budget spent"
                else:
                    try:
                        row.update(run_batch_case(engine, family, size, count, not smoke))
                        single = single or row["images_per_s"]  # the first: the batch of 1
                        row["vs_batch_1"] = row["images_per_s"] / single
                    except Exception as exc:  # report the case, go on with the next
                        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                        traceback.print_exc()
                rows.append(row)
                print(json.dumps(row), flush=True)
            del engine, pipe
            gc.collect()
            if not smoke:
                torch.cuda.empty_cache()
    return rows


def report_line(row: dict[str, Any]) -> str:
    head = f"{row['family']:5} {row['case']:28}"
    if "seconds_per_image" in row:
        ratio = f"  x{row['vs_baseline']:.2f}" if "vs_baseline" in row else ""
        return (
            f"{head} {row['seconds_per_image']:7.3f} s/image {row['peak_gib']:6.2f} GiB peak{ratio}"
        )
    if "images_per_s" in row:
        peak = f"{row['peak_gib']:6.2f} GiB peak" if row["peak_gib"] is not None else "  (no CUDA)"
        ratio = f"  x{row['vs_batch_1']:.2f} images/s vs 1" if "vs_batch_1" in row else ""
        return f"{head} {row['images_per_s']:7.2f} images/s {peak}{ratio}"
    return f"{head} {row.get('error') or row['skipped']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--families", default="sd15,sdxl,flux")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--batch-sizes", default="1,2,4,8", help="jobs per generate_batch call")
    parser.add_argument("--sections", default="batching,options", help="batching and/or options")
    parser.add_argument(
        "--smoke", action="store_true", help="only the batching section, on the CPU, tiny models"
    )
    args = parser.parse_args()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    if args.smoke:
        rows = batching_rows(args, started, smoke=True)
        text = "\n".join(["smoke run on the CPU, tiny models: the figures mean nothing"]
                         + [report_line(row) for row in rows])  # fmt: skip
        print(text)
        (args.out / "gpu_check.txt").write_text(text + "\n")
        return 0 if all("images_per_s" in row for row in rows) else 1
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs one", file=sys.stderr)
        return 2
    from nostr_imagegen.engine.memory import place_and_tune
    from nostr_imagegen.engine_config import ModelConfig

    device = torch.cuda.get_device_name(0)
    rows: list[dict[str, Any]] = []
    table = [f"device: {device}; {args.steps} steps; random weights at real sizes"]
    sections = args.sections.split(",")
    if "batching" in sections:
        rows.extend(batching_rows(args, started))
    for family in args.families.split(",") if "options" in sections else []:
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
    table.extend(report_line(row) for row in rows)
    text = "\n".join(table)
    print(text)
    (args.out / "gpu_check.txt").write_text(text + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
