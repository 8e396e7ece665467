"""Every model family, built tiny, saved, loaded back by its real ``from_pretrained`` and
run through ``Engine``: sizes, negative prompts, LoRAs switched per job, img2img, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _engine_support import MakeJob
from PIL import Image

from nostr_imagegen.engine import Engine, EngineConfig
from nostr_imagegen.engine.families import FAMILIES, NegativePrompt, family_spec, pipeline_class
from nostr_imagegen.errors import ConfigError, JobRejected
from nostr_imagegen.imagejob.dimensions import ModelFamily
from nostr_imagegen.imagejob.model import Ratio
from nostr_imagegen.testing import build_tiny_family, build_tiny_family_lora

#: The families beyond the SD 1.5 / SDXL ones the rest of the engine tests use.
NEW = [f for f in ModelFamily if f not in (ModelFamily.SD15, ModelFamily.SDXL)]
WITH_NEGATIVE = [f for f in NEW if family_spec(f).negative_prompt is NegativePrompt.GUIDANCE]
WITH_IMG2IMG = [f for f in NEW if family_spec(f).img2img is not None]
WITHOUT_IMG2IMG = [f for f in NEW if family_spec(f).img2img is None]


def _name(family: ModelFamily) -> str:
    return f"tiny-{family.value}"


@pytest.fixture(scope="module")
def folders(
    tmp_path_factory: pytest.TempPathFactory, torch_one_thread: None
) -> dict[ModelFamily, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("families")
    built = {}
    for family in NEW:
        folder = build_tiny_family(root / family.value, family)
        lora = build_tiny_family_lora(root / f"{family.value}-lora", folder, family)
        built[family] = (folder, lora)
    return built


def _config(folders: dict[ModelFamily, tuple[Path, Path]], **model_extra: Any) -> EngineConfig:
    models = {
        _name(f): {
            "source": str(folder),
            "family": f.value,
            "steps": 2,
            # Z-Image applies guidance above 0, the others above 1: 3 works for all.
            "guidance_scale": 3.0,
            # Sides of UNet families keep multiples of 64: a 64 native square has no ratios.
            "native_size": 128 if f.multiple == 64 else 64,
            **model_extra.get(f.value, {}),
        }
        for f, (folder, _) in folders.items()
    }
    loras = {
        f"{_name(f)}-lora": {"source": str(lora), "family": f.value}
        for f, (_, lora) in folders.items()
    }
    return EngineConfig.from_mapping({"models": models, "loras": loras, "device": "cpu"})


@pytest.fixture(scope="module")
def engine(folders: dict[ModelFamily, tuple[Path, Path]]) -> Iterator[Engine]:
    engine = Engine(_config(folders))
    yield engine
    engine.close()


def _pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("family", NEW, ids=str)
def test_ratio_and_size(engine: Engine, make_job: MakeJob, family: ModelFamily) -> None:
    multiple = family.multiple
    wide = engine.generate(make_job(("model", _name(family)), ("ratio", "16:9"), ("seed", "1")))
    assert wide.images[0].width > wide.images[0].height
    assert wide.width % multiple == 0
    assert wide.height % multiple == 0
    sized = engine.generate(make_job(("model", _name(family)), ("size", "100x70"), ("seed", "1")))
    assert sized.images[0].size == (100, 70)
    assert sized.width % multiple == 0
    assert sized.height % multiple == 0
    assert _pixels(sized.images[0]).std() > 5  # a picture, not a flat fill


@pytest.mark.parametrize("family", WITH_NEGATIVE, ids=str)
def test_negative_prompt_changes_the_image(
    engine: Engine, make_job: MakeJob, family: ModelFamily
) -> None:
    params = [("model", _name(family)), ("size", "64x64"), ("seed", "3")]
    plain = engine.generate(make_job(*params))
    negative = engine.generate(make_job(*params, ("negative_prompt", "blurry, grey")))
    assert negative.negative_prompt == "blurry, grey"
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(negative.images[0]))


@pytest.mark.parametrize("family", [ModelFamily.FLUX, ModelFamily.FLUX2], ids=str)
def test_negative_prompt_refused_where_it_would_not_apply(
    engine: Engine, make_job: MakeJob, family: ModelFamily
) -> None:
    job = make_job(("model", _name(family)), ("negative_prompt", "blurry"))
    with pytest.raises(JobRejected, match=rf"model {_name(family)} .* does not take a negative"):
        engine.plan(job)


def test_negative_prompt_refused_at_a_guidance_that_ignores_it(
    engine: Engine, make_job: MakeJob
) -> None:
    job = make_job(("model", "tiny-sd3"), ("guidance_scale", "1"), ("negative_prompt", "x"))
    with pytest.raises(JobRejected, match="guidance_scale above 1"):
        engine.plan(job)


def test_flux_true_cfg_applies_a_negative_prompt(
    folders: dict[ModelFamily, tuple[Path, Path]], make_job: MakeJob
) -> None:
    engine = Engine(_config(folders, flux={"true_cfg_scale": 4.0}))
    params = [("model", "tiny-flux"), ("size", "64x64"), ("seed", "3")]
    plain = engine.generate(make_job(*params))
    negative = engine.generate(make_job(*params, ("negative_prompt", "blurry")))
    assert not np.array_equal(_pixels(plain.images[0]), _pixels(negative.images[0]))
    assert (
        "negative_prompt"
        in next(m for m in engine.offered().models if m.name == "tiny-flux").params
    )


def test_ignore_unsupported_drops_the_negative_prompt(
    folders: dict[ModelFamily, tuple[Path, Path]], make_job: MakeJob
) -> None:
    engine = Engine(_config(folders, flux2={"ignore_unsupported": ["negative_prompt"]}))
    params = [("model", "tiny-flux2"), ("size", "64x64"), ("seed", "3")]
    plan = engine.plan(make_job(*params, ("negative_prompt", "blurry")))
    assert plan.negative_prompt is None
    assert plan.ignored == ("negative_prompt",)
    plain = engine.generate(make_job(*params))
    dropped = engine.generate(make_job(*params, ("negative_prompt", "blurry")))
    assert np.array_equal(_pixels(plain.images[0]), _pixels(dropped.images[0]))
    offered = next(m for m in engine.offered().models if m.name == "tiny-flux2")
    assert offered.ignores == ("negative_prompt",)
    assert "negative_prompt" not in offered.params


def test_true_cfg_scale_only_for_flux(folders: dict[ModelFamily, tuple[Path, Path]]) -> None:
    with pytest.raises(ConfigError, match=r"true_cfg_scale: only for FLUX\.1"):
        Engine(_config(folders, sd3={"true_cfg_scale": 4.0}))


@pytest.mark.parametrize("family", NEW, ids=str)
def test_lora_switched_per_job_matches_diffusers(
    engine: Engine,
    folders: dict[ModelFamily, tuple[Path, Path]],
    make_job: MakeJob,
    family: ModelFamily,
) -> None:
    params = [("model", _name(family)), ("size", "64x64"), ("seed", "5")]
    base = engine.generate(make_job(*params))
    with_lora = engine.generate(make_job(*params, ("lora", f"{_name(family)}-lora")))
    again = engine.generate(make_job(*params))
    assert not np.array_equal(_pixels(base.images[0]), _pixels(with_lora.images[0]))
    # The same pixels as diffusers' own calls on a freshly loaded pipeline.
    folder, lora = folders[family]
    spec = family_spec(family)
    pipeline = pipeline_class(spec.text2img).from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    import torch

    def call() -> Image.Image:
        kwargs: dict[str, Any] = {
            "prompt": base.prompt,
            "num_inference_steps": 2,
            spec.guidance_argument: 3.0,
            "width": 64,
            "height": 64,
            "generator": torch.Generator().manual_seed(5),
        }
        if family is ModelFamily.SANA:
            kwargs["use_resolution_binning"] = False
        image: Image.Image = pipeline(**kwargs).images[0]
        return image

    expected_base = call()
    pipeline.load_lora_weights(str(lora), adapter_name="x")
    expected_lora = call()
    # Sana's peft-wrapped linear attention differs from the unwrapped one by ~1e-4 before
    # rounding to 8 bits; every other family matches exactly.
    tolerance = 1 if family is ModelFamily.SANA else 0
    for got, want in ((base, expected_base), (again, expected_base), (with_lora, expected_lora)):
        assert np.abs(_pixels(got.images[0]) - _pixels(want)).max() <= tolerance


@pytest.mark.parametrize("family", WITH_IMG2IMG, ids=str)
def test_img2img(engine: Engine, make_job: MakeJob, family: ModelFamily) -> None:
    init = Image.new("RGB", (80, 80), (200, 30, 30))
    job = make_job(
        ("model", _name(family)),
        ("size", "64x64"),
        ("strength", "0.5"),
        ("steps", "4"),
        ("seed", "9"),
        image_url="https://example.com/in.png",
    )
    result = engine.generate(job, init_image=init)
    assert result.images[0].size == (64, 64)
    assert result.strength == 0.5
    # The input image shapes the output: another input, same seed, another picture.
    other = engine.generate(job, init_image=Image.new("RGB", (80, 80), (20, 200, 220)))
    assert not np.array_equal(_pixels(other.images[0]), _pixels(result.images[0]))


@pytest.mark.parametrize("family", WITHOUT_IMG2IMG, ids=str)
def test_img2img_refused(engine: Engine, make_job: MakeJob, family: ModelFamily) -> None:
    job = make_job(("model", _name(family)), image_url="https://example.com/in.png")
    with pytest.raises(JobRejected, match="cannot alter an input image"):
        engine.plan(job)


def test_table_matches_the_diffusers_classes() -> None:
    for family, spec in FAMILIES.items():
        text2img = pipeline_class(spec.text2img)
        assert hasattr(text2img, "load_lora_weights") == spec.lora, family
        if spec.single_file:
            assert hasattr(text2img, "from_single_file"), family
        if spec.img2img is not None:
            assert "strength" in _parameters(pipeline_class(spec.img2img)), family


def test_announced_params(engine: Engine) -> None:
    offered = {m.name: m for m in engine.offered().models}
    assert "strength" not in offered["tiny-sana"].params
    assert "negative_prompt" not in offered["tiny-flux"].params
    assert {"negative_prompt", "strength", "lora"} <= set(offered["tiny-zimage"].params)
    assert offered["tiny-sana"].max_size == "1024x1024"


def _parameters(cls: Any) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__call__).parameters)


def test_announcement_lists_each_model(
    folders: dict[ModelFamily, tuple[Path, Path]],
) -> None:
    import json

    from nostr_imagegen.service.announce import handler_info_template
    from nostr_imagegen.service.options import Announcement

    engine = Engine(_config(folders, flux={"ignore_unsupported": ["negative_prompt"]}))
    event = handler_info_template(
        Announcement(identifier="d", name="n", about="a"), engine.offered(), [5100]
    )
    models = {entry["name"]: entry for entry in json.loads(event.content)["models"]}
    assert set(models) == {_name(f) for f in NEW}
    assert models["tiny-flux"]["family"] == "flux"
    assert models["tiny-flux"]["ignores"] == ["negative_prompt"]
    assert "strength" not in models["tiny-flux2"]["params"]
    assert models["tiny-sd2"]["max_size"] == "1024x1024"


def test_cli_run_serves_every_family(
    folders: dict[ModelFamily, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make_job: MakeJob,
) -> None:
    from nostr_imagegen.cli import main
    from nostr_imagegen.nostr.keys import Keys
    from nostr_imagegen.testing import write_tiny_config

    config = write_tiny_config(
        tmp_path / "engine.toml",
        {_name(f): folder for f, (folder, _) in folders.items()},
        families={_name(f): f for f in folders},
        device="cpu",
        native_size=128,
    )
    monkeypatch.setenv("NOSTR_IMAGEGEN_NSEC", Keys.generate().nsec())
    for family in folders:
        job = make_job(("model", _name(family)), ("size", "96x64"), ("seed", "2"))
        request = tmp_path / f"{family.value}.json"
        request.write_text(job.request.to_json(), encoding="utf-8")
        out = tmp_path / family.value
        code = main(["run", "--config", str(config), "--out", str(out), str(request)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        (written,) = out.iterdir()
        with Image.open(written) as image:
            assert image.size == (96, 64)
        assert '"kind":6100' in captured.out.replace(" ", "")


# Single-file checkpoints: offered only where a test loads one.
FOLDER_ONLY = [f for f in ModelFamily if not family_spec(f).single_file]


def test_single_file_is_offered_for_the_tested_flow_families_only() -> None:
    # Z-Image's file is loaded below; no tiny SD3 / FLUX.1 / Chroma file loads (their
    # converters hard-code the real widths), so those are folder-only.
    flow = {f for f in ModelFamily if family_spec(f).flow_matching and family_spec(f).single_file}
    assert flow == {ModelFamily.ZIMAGE}


def test_zimage_single_file_draws_like_the_folder(
    engine: Engine,
    folders: dict[ModelFamily, tuple[Path, Path]],
    tmp_path: Path,
    make_job: MakeJob,
) -> None:
    from nostr_imagegen.testing import save_single_file_checkpoint

    folder, _ = folders[ModelFamily.ZIMAGE]
    checkpoint = save_single_file_checkpoint(folder, tmp_path / "z-image.safetensors")
    model = {
        "source": str(checkpoint),
        "family": "zimage",
        "single_file_config": str(folder),
        "steps": 2,
        "guidance_scale": 3.0,
        "native_size": 64,
    }
    single = Engine(EngineConfig.from_mapping({"models": {"z": model}, "device": "cpu"}))
    try:
        params = [("ratio", "16:9"), ("seed", "4")]
        got = single.generate(make_job(("model", "z"), *params))
        want = engine.generate(make_job(("model", "tiny-zimage"), *params))
        assert got.images[0].size == want.images[0].size
        assert np.array_equal(_pixels(got.images[0]), _pixels(want.images[0]))
    finally:
        single.close()


def test_sd2_single_file_draws_like_the_folder(
    engine: Engine,
    folders: dict[ModelFamily, tuple[Path, Path]],
    tmp_path: Path,
    make_job: MakeJob,
) -> None:
    from nostr_imagegen.testing import save_single_file_checkpoint

    # The SD 2 file holds the OpenCLIP text encoder (``cond_stage_model.model.*``, fused
    # in_proj), not SD 1.5's transformers CLIP one.
    folder, _ = folders[ModelFamily.SD2]
    checkpoint = save_single_file_checkpoint(folder, tmp_path / "sd2.safetensors")
    model = {
        "source": str(checkpoint),
        "family": "sd2",
        "single_file_config": str(folder),
        "steps": 2,
        "guidance_scale": 3.0,
        "native_size": 128,
    }
    single = Engine(EngineConfig.from_mapping({"models": {"two": model}, "device": "cpu"}))
    try:
        params = [("size", "64x64"), ("seed", "4")]
        got = single.generate(make_job(("model", "two"), *params))
        want = engine.generate(make_job(("model", "tiny-sd2"), *params))
        assert got.images[0].size == want.images[0].size
        assert np.array_equal(_pixels(got.images[0]), _pixels(want.images[0]))
    finally:
        single.close()


def test_zimage_single_file_needs_its_config_folder(tmp_path: Path) -> None:
    checkpoint = tmp_path / "z.safetensors"
    checkpoint.write_bytes(b"")
    config = EngineConfig.from_mapping(
        {"models": {"z": {"source": str(checkpoint), "family": "zimage"}}, "device": "cpu"}
    )
    with pytest.raises(ConfigError, match=r"models\.z\.single_file_config: a Z-Image .* only"):
        Engine(config)


@pytest.mark.parametrize("family", FOLDER_ONLY, ids=str)
def test_single_file_refused_for_folder_only_families(tmp_path: Path, family: ModelFamily) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"")
    config = EngineConfig.from_mapping(
        {"models": {"m": {"source": str(checkpoint), "family": family.value}}, "device": "cpu"}
    )
    with pytest.raises(ConfigError) as refused:
        Engine(config)
    message = str(refused.value)
    assert "models.m.source: single-file checkpoints are not supported for family " in message
    assert f"{family.value!r} ({family_spec(family).title})" in message
    assert "only a diffusers folder or hub id is" in message


# Sizes for every ratio, per family, as planned (no model is loaded).
@pytest.fixture(scope="module")
def planner() -> Iterator[Engine]:
    models = {
        f.value: {
            "source": f"example/{f.value}",
            "family": f.value,
            "default": f is ModelFamily.SD15,
        }
        for f in ModelFamily
    }
    engine = Engine(EngineConfig.from_mapping({"models": models, "device": "cpu"}))
    yield engine
    engine.close()


@pytest.mark.parametrize("ratio", list(Ratio), ids=str)
@pytest.mark.parametrize("family", list(ModelFamily), ids=str)
def test_every_ratio_plans_to_the_familys_sizes(
    planner: Engine, make_job: MakeJob, family: ModelFamily, ratio: Ratio
) -> None:
    plan = planner.plan(make_job(("model", family.value), ("ratio", ratio.value)))
    width, height = plan.dimensions.width, plan.dimensions.height
    multiple = family.multiple
    assert width % multiple == 0
    assert height % multiple == 0
    parts_w, parts_h = ratio.parts
    if parts_w == parts_h:
        assert width == height
    else:
        assert (width > height) == (parts_w > parts_h)
    # Each side is the exact side snapped to the nearest multiple (half a step off), or one
    # step below it where rounding up would pass max_pixels (16:10 at 1024 native).
    step = multiple
    assert (width - step) / (height + step) <= parts_w / parts_h <= (width + step) / (height - step)
    # About the family's native area (that is what a ratio keeps), within the limits.
    assert abs(width * height / family.native_size**2 - 1) < 0.25
    limits = planner.config.limits
    assert limits.min_side <= min(width, height)
    assert max(width, height) <= limits.max_side
    assert width * height <= limits.max_pixels
    assert (plan.dimensions.output_width, plan.dimensions.output_height) == (width, height)
