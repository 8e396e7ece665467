"""Device and precision choice: the caller's when usable, else the best available."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nostr_imagegen.engine.device import generator_device, select_device, select_dtype  # noqa: E402
from nostr_imagegen.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.engine


def test_best_device_and_explicit_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else None
    best = select_device(None)
    assert best in ("cuda", "mps", "cpu")
    if expected is not None:
        assert best == expected
    assert select_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_asked_for_without_cuda() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda:0")


@pytest.mark.parametrize("name", ["tpu", "cpu:1", "cuda:x", ""])
def test_unknown_devices(name: str) -> None:
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("without CUDA every cuda device is refused for that reason first")
    with pytest.raises(ConfigError):
        select_device(name)


def test_precision() -> None:
    assert select_dtype("cpu") == torch.float32
    assert select_dtype("cuda") == torch.float16
    assert select_dtype("mps") == torch.float16
    assert select_dtype("cpu", "bf16") == torch.bfloat16
    assert select_dtype("cuda", "float32") == torch.float32
    assert select_dtype("cuda", torch.bfloat16) == torch.bfloat16
    with pytest.raises(ConfigError, match="float16, bfloat16, float32"):
        select_dtype("cpu", "int8")


def test_generator_device() -> None:
    assert generator_device("cuda:1") == "cuda:1"
    assert generator_device("mps") == "cpu"
    assert generator_device("cpu") == "cpu"
