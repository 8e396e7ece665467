"""upscale_image: Lanczos by default, learned Real-ESRGAN-family models through spandrel.

spandrel imports torchvision at import time (for two architectures we never use), and
torchvision cannot be installed here without dragging in a CUDA torch. The library's
``import_spandrel`` imports it anyway, as an operator's machine would, behind a stand-in it
removes again, and never over a torchvision that is there; the architectures under test
(RRDBNet, SRVGGNetCompact) never touch torchvision.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nostr_imagegen.engine.spandrel_import import (
    STAND_IN_MODULES,
    import_spandrel,
    missing_torchvision_stand_in,
)
from nostr_imagegen.engine.upscale import (
    MAX_UPSCALE_FACTOR,
    LanczosUpscaler,
    SpandrelUpscaler,
    Upscaler,
    upscale_image,
    upscaled_size,
)
from nostr_imagegen.errors import ConfigError, EngineError, JobRejected


def _noise(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    return image.convert(mode) if mode != "RGB" else image


def _max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


# --- Lanczos and the bounds --------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "size"), [(2, (128, 96)), (4, (256, 192)), (1.5, (96, 72)), (2.5, (160, 120))]
)
def test_lanczos_sizes(factor: float, size: tuple[int, int]) -> None:
    image = _noise(64, 48)
    result = upscale_image(image, factor)
    assert result.size == size
    assert upscaled_size(image, factor) == size


def test_lanczos_keeps_content() -> None:
    # A flat image stays flat; a two-colour split stays split where it was.
    flat = Image.new("RGB", (20, 10), (200, 30, 90))
    assert _max_diff(upscale_image(flat, 4), Image.new("RGB", (80, 40), (200, 30, 90))) == 0
    split = Image.new("L", (20, 20), 0)
    split.paste(255, (10, 0, 20, 20))
    big = np.asarray(upscale_image(split, 2))
    assert big[:, :16].max() < 10
    assert big[:, 24:].min() > 245


def test_factor_one_returns_an_equal_copy() -> None:
    image = _noise(30, 20)
    result = upscale_image(image, 1)
    assert result is not image
    assert result.tobytes() == image.tobytes()


def test_caller_image_is_not_modified() -> None:
    image = _noise(30, 20)
    before = image.tobytes()
    upscale_image(image, 2)
    assert image.tobytes() == before


@pytest.mark.parametrize(
    "factor", [0.5, 0.0, -2, MAX_UPSCALE_FACTOR + 0.5, 100, math.nan, math.inf]
)
def test_out_of_range_factors_are_rejected(factor: float) -> None:
    with pytest.raises(JobRejected, match="upscale factor"):
        upscale_image(_noise(8, 8), factor)


@pytest.mark.parametrize("factor", [True, "2", None])
def test_non_numeric_factors_are_rejected(factor: Any) -> None:
    with pytest.raises(JobRejected, match="must be a number"):
        upscale_image(_noise(8, 8), factor)


def test_output_pixel_bound() -> None:
    with pytest.raises(JobRejected, match="pixels"):
        upscale_image(_noise(100, 100), 4, max_pixels=399 * 400)
    assert upscale_image(_noise(100, 100), 4, max_pixels=400 * 400).size == (400, 400)


def test_lanczos_is_an_upscaler() -> None:
    assert isinstance(LanczosUpscaler(), Upscaler)


def test_custom_upscaler_is_used_and_checked() -> None:
    calls: list[float] = []

    class Nearest:
        def upscale(self, image: Image.Image, factor: float) -> Image.Image:
            calls.append(factor)
            return image.resize(upscaled_size(image, factor), Image.Resampling.NEAREST)

    class Wrong:
        def upscale(self, image: Image.Image, factor: float) -> Image.Image:
            return image.copy()

    image = _noise(10, 10)
    result = upscale_image(image, 3, Nearest())
    assert calls == [3]
    assert _max_diff(result, image.resize((30, 30), Image.Resampling.NEAREST)) == 0
    with pytest.raises(EngineError, match="expected 20x20"):
        upscale_image(image, 2, Wrong())


# --- spandrel ----------------------------------------------------------------------------


def test_missing_spandrel_is_a_config_error_that_explains(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # makes `import spandrel` fail
    with pytest.raises(ConfigError, match="needs spandrel") as caught:
        SpandrelUpscaler(tmp_path / "x.safetensors")
    assert "pip install --no-deps spandrel" in str(caught.value)


@pytest.mark.parametrize(("tile_size", "overlap"), [(8, 0), (64, -1), (64, 65)])
def test_bad_tiling_is_a_config_error(tile_size: int, overlap: int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tile"):
        SpandrelUpscaler(tmp_path / "x.safetensors", tile_size=tile_size, tile_overlap=overlap)


@pytest.fixture(scope="module")
def spandrel() -> Any:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    try:
        return import_spandrel()
    except ImportError as exc:
        pytest.skip(
            f"spandrel is not installed ({exc}); these tests run in .venv-upscale: "
            ".venv-upscale/bin/python -m pytest tests/engine/test_upscale.py"
        )


def _compact_state_dict(
    scale: int, num_feat: int = 8, num_conv: int = 2, seed: int = 0
) -> dict[str, Any]:
    """A random SRVGGNetCompact (realesr-general-x4v3 layout) with upstream key names."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}

    def conv(index: int, cin: int, cout: int) -> None:
        state[f"body.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.15
        state[f"body.{index}.bias"] = torch.randn(cout, generator=gen) * 0.05

    conv(0, 3, num_feat)
    state["body.1.weight"] = torch.full((num_feat,), 0.2)  # PReLU
    for i in range(num_conv):
        conv(2 + 2 * i, num_feat, num_feat)
        state[f"body.{3 + 2 * i}.weight"] = torch.full((num_feat,), 0.2)
    conv(2 * num_conv + 2, num_feat, 3 * scale * scale)
    return state


def _rrdb_state_dict(num_feat: int = 8, grow: int = 32, seed: int = 1) -> dict[str, Any]:
    """A random one-block Real-ESRGAN RRDBNet x4 with the basicsr key names."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.05
        state[f"{name}.bias"] = torch.zeros(cout)

    conv("conv_first", 3, num_feat)
    for rdb in (1, 2, 3):
        for i in range(1, 5):
            conv(f"body.0.rdb{rdb}.conv{i}", num_feat + (i - 1) * grow, grow)
        conv(f"body.0.rdb{rdb}.conv5", num_feat + 4 * grow, num_feat)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, num_feat, num_feat)
    conv("conv_last", num_feat, 3)
    return state


def _save(state: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def compact_x4(spandrel: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_compact_state_dict(4), tmp_path_factory.mktemp("w") / "compact-x4.safetensors")


@pytest.fixture(scope="module")
def compact_x2(spandrel: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_compact_state_dict(2), tmp_path_factory.mktemp("w") / "compact-x2.safetensors")


@pytest.fixture(scope="module")
def rrdb_x4(spandrel: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_rrdb_state_dict(), tmp_path_factory.mktemp("w") / "rrdb-x4.safetensors")


@pytest.mark.engine
def test_spandrel_recognises_compact_and_upscales(compact_x4: Path) -> None:
    upscaler = SpandrelUpscaler(compact_x4)
    assert upscaler.scale == 4
    assert isinstance(upscaler, Upscaler)
    image = _noise(40, 30)
    result = upscale_image(image, 4, upscaler)
    assert result.size == (160, 120)
    assert result.mode == "RGB"
    # Not a plain resize: the model's residual changes the nearest-neighbour base.
    assert _max_diff(result, image.resize((160, 120), Image.Resampling.NEAREST)) > 0


@pytest.mark.engine
def test_spandrel_recognises_rrdbnet(rrdb_x4: Path) -> None:
    upscaler = SpandrelUpscaler(rrdb_x4)
    assert upscaler.scale == 4
    assert "ESRGAN" in repr(upscaler)
    assert upscale_image(_noise(20, 12), 2, upscaler).size == (40, 24)


@pytest.mark.engine
def test_repr_names_the_file_not_its_folder(compact_x4: Path) -> None:
    text = repr(SpandrelUpscaler(compact_x4))
    assert compact_x4.name in text
    assert str(compact_x4.parent) not in text


@pytest.mark.engine
@pytest.mark.parametrize("weights", ["compact_x4", "rrdb_x4"])
def test_tiled_output_matches_untiled(weights: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(weights)
    image = _noise(70, 45, seed=3)
    whole = SpandrelUpscaler(path, tile_size=256).upscale(image, 4)
    # Overlap beyond the receptive radius (compact: 4 px, one-block RRDB: about 18 px).
    tiled = SpandrelUpscaler(path, tile_size=32, tile_overlap=16 if weights == "compact_x4" else 24)
    assert _max_diff(tiled.upscale(image, 4), whole) <= 1
    # Without context the tile borders show: proves the image really was cut.
    seams = SpandrelUpscaler(path, tile_size=32, tile_overlap=0)
    assert _max_diff(seams.upscale(image, 4), whole) > 1


@pytest.mark.engine
def test_non_integer_factor_shrinks_the_model_output(compact_x4: Path) -> None:
    upscaler = SpandrelUpscaler(compact_x4)
    image = _noise(24, 16)
    result = upscale_image(image, 2.5, upscaler)
    assert result.size == (60, 40)
    native = upscaler.upscale(image, 4)
    assert _max_diff(result, native.resize((60, 40), Image.Resampling.LANCZOS)) == 0


@pytest.mark.engine
def test_factor_beyond_native_scale_runs_the_model_again(compact_x2: Path) -> None:
    upscaler = SpandrelUpscaler(compact_x2)
    assert upscaler.scale == 2
    image = _noise(16, 12)
    four = upscale_image(image, 4, upscaler)
    assert four.size == (64, 48)
    assert _max_diff(four, upscaler.upscale(upscaler.upscale(image, 2), 2)) == 0
    three = upscale_image(image, 3, upscaler)
    assert three.size == (48, 36)
    assert _max_diff(three, four.resize((48, 36), Image.Resampling.LANCZOS)) == 0


@pytest.mark.engine
def test_alpha_survives(compact_x4: Path) -> None:
    image = _noise(20, 20, mode="RGBA")
    image.putalpha(Image.new("L", (20, 20), 77))
    result = SpandrelUpscaler(compact_x4).upscale(image, 2)
    assert result.mode == "RGBA"
    assert result.size == (40, 40)
    assert set(np.asarray(result.getchannel("A")).ravel().tolist()) == {77}


@pytest.mark.engine
def test_restoration_model_is_not_an_upscaler(spandrel: Any, tmp_path: Path) -> None:
    path = _save(_compact_state_dict(1), tmp_path / "denoise-x1.safetensors")
    with pytest.raises(ConfigError, match="not a super-resolution model"):
        SpandrelUpscaler(path)


@pytest.mark.engine
def test_unknown_or_missing_weights_are_config_errors(spandrel: Any, tmp_path: Path) -> None:
    import torch

    unknown = _save({"foo.weight": torch.zeros(2, 2)}, tmp_path / "unknown.safetensors")
    with pytest.raises(ConfigError, match="cannot load"):
        SpandrelUpscaler(unknown)
    with pytest.raises(ConfigError, match="do not exist"):
        SpandrelUpscaler(tmp_path / "absent.safetensors")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="cannot load"):
        SpandrelUpscaler(text)


def test_spandrel_import_leaves_no_fake_torchvision_behind(spandrel: Any) -> None:
    """Other libraries (transformers, diffusers) must not see a torchvision that is not there."""
    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules
        assert "torchvision.transforms.functional" not in sys.modules
    assert hasattr(spandrel, "ModelLoader")


def _spandrel_and_torchvision_modules() -> dict[str, Any]:
    return {
        name: module
        for name, module in sys.modules.items()
        if name.split(".")[0] in ("spandrel", "torchvision")
    }


@pytest.fixture
def fresh_import(spandrel: Any) -> Iterator[None]:
    """spandrel (and any torchvision) out of ``sys.modules`` for the test, so the next import
    is a real one; everything put back afterwards, whatever the test imported."""
    saved = _spandrel_and_torchvision_modules()
    for name in saved:
        del sys.modules[name]
    yield
    for name in _spandrel_and_torchvision_modules():
        del sys.modules[name]
    sys.modules.update(saved)


def _fake_torchvision(*, complete: bool) -> dict[str, types.ModuleType]:
    """Modules standing for an installed torchvision: all three spandrel imports, or the
    package alone (as a broken install would leave it)."""
    root = types.ModuleType("torchvision")
    if not complete:
        return {"torchvision": root}
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = object()  # type: ignore[attr-defined]
    functional.rotate = functional.normalize = len  # type: ignore[attr-defined]
    root.__path__ = []  # a package
    root.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    transforms.__path__ = []
    return {module.__name__: module for module in (root, transforms, functional)}


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None,
    reason="torchvision is installed: no stand-in is ever used",
)
def test_without_torchvision_spandrel_is_imported_behind_a_stand_in_then_removed(
    fresh_import: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="nostr_imagegen.engine.spandrel_import"):
        spandrel = import_spandrel()
    assert hasattr(spandrel, "ModelLoader")
    assert "importing behind a stand-in" in caplog.text
    assert "stand-in removed" in caplog.text
    assert not [name for name in STAND_IN_MODULES if name in sys.modules]
    # Only the unused architecture holds the stand-in, and it refuses to work.
    lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        lama.rotate(None, 90)


def test_a_torchvision_present_is_never_shadowed(
    fresh_import: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    complete = _fake_torchvision(complete=True)
    for name, module in complete.items():
        monkeypatch.setitem(sys.modules, name, module)
    with caplog.at_level(logging.DEBUG, logger="nostr_imagegen.engine.spandrel_import"):
        import_spandrel()
    assert "stand-in" not in caplog.text
    lama = sys.modules["spandrel.architectures.LaMa.__arch.LaMa"]
    assert lama.rotate is len  # spandrel took the torchvision that was there
    assert all(sys.modules[name] is module for name, module in complete.items())
    with pytest.raises(RuntimeError, match="refusing to shadow"), missing_torchvision_stand_in():
        pass


def test_a_broken_torchvision_is_reported_not_papered_over(
    fresh_import: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (broken,) = _fake_torchvision(complete=False).values()
    monkeypatch.setitem(sys.modules, "torchvision", broken)
    with pytest.raises(ModuleNotFoundError, match="torchvision"):
        import_spandrel()
    assert sys.modules["torchvision"] is broken
    assert "spandrel" not in sys.modules
