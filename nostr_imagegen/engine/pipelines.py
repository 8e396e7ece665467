"""Loading diffusers pipelines once, keeping a bounded number of them, and their LoRAs.

    cache = PipelineCache(config, device="cuda", dtype=torch.float16)
    model = cache.get("sdxl-turbo")          # loads on first use, then least-recently-used
    cache.loads                              # models loaded so far (hits are not loads)
    model.text2img(prompt=..., ...)          # the text-to-image pipeline
    model.img2img()(prompt=..., image=...)   # derived with from_pipe: the same weights
    cache.ensure_loras(model, ["pixel-art"]) # named adapters, loaded once per pipeline

Sources: a folder or hub id goes through the family's text-to-image class
(``engine.families``) ``from_pretrained``; a ``.safetensors``/``.ckpt`` file through its
``from_single_file`` (with
``single_file_config`` as the folder of component configs, so no network is needed). A
family whose checkpoints hold only the transformer (Z-Image) loads that with the
transformer class's ``from_single_file`` and the rest from ``single_file_config``.

Bounds: at most ``cache.max_models`` pipelines, and optionally ``cache.max_memory_mb`` of
weights (estimated from parameter and buffer bytes); the least recently used goes first, and
an evicted pipeline is dropped, garbage-collected and, on CUDA, its memory returned.

Thread safety: each model has its own lock, so two threads asking for the same model load it
once (the second waits for the first) while another model may load beside it.

LoRA state: a freshly loaded adapter is active in diffusers; this cache disables LoRAs right
after loading, so a pipeline handed out always behaves as the base model until the caller
enables adapters for one job and turns them off again afterwards (``Engine`` does):

    model.activate_loras([("pixel-art", 0.8), ("film", 0.5)])   # (name, weight) pairs
    ...                                                          # run the job
    model.activate_loras([])                                     # the base model again

``activate_loras`` sets what diffusers' ``enable_lora`` + ``set_adapters`` (or
``disable_lora``) set, on the peft LoRA layers found once per LoRA load: the active adapters,
each adapter's scale (``weight * lora_alpha / r``, via peft's ``set_scale``) and the
adapters-disabled flag. diffusers' own calls walk every module of the UNet and the text
encoders (about 2,400 in SD 1.5) and set ``requires_grad`` on every LoRA weight on each call;
that cost tens of milliseconds per job, this costs about a millisecond, with the same pixels.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nostr_imagegen.engine.families import family_spec, pipeline_class
from nostr_imagegen.engine.memory import load_options, model_dtype, place_and_tune
from nostr_imagegen.engine_config import EngineConfig, LoraConfig, ModelConfig
from nostr_imagegen.errors import ConfigError, EngineError

__all__ = ["LoadedModel", "PipelineCache", "PipelineLoader", "estimate_bytes", "load_pipeline"]

logger = logging.getLogger(__name__)

#: ``(model config, device, dtype) -> text-to-image pipeline``; the seam tests and embedders
#: may replace (the default is ``load_pipeline``).
PipelineLoader = Callable[[ModelConfig, str, torch.dtype], Any]

#: diffusers and transformers build models on the meta device under a process-wide context
#: (accelerate's ``init_empty_weights``): two loads at once in two threads, e.g. two engines
#: of one process on two GPUs, fail with "Cannot copy out of meta tensor".
_LOAD_LOCK = threading.Lock()


def load_pipeline(model: ModelConfig, device: str, dtype: torch.dtype) -> Any:
    """Load ``model`` with the real diffusers loaders, move it to ``device``, quiet its
    progress bars. Raises whatever diffusers raises (the cache wraps it). One load at a time
    per process (``_LOAD_LOCK``); generation on loaded models goes on beside it."""
    with _LOAD_LOCK:
        return _load(model, device, dtype)


def _load(model: ModelConfig, device: str, dtype: torch.dtype) -> Any:
    diffusers: Any = importlib.import_module("diffusers")

    kwargs: dict[str, Any] = {_dtype_keyword(): dtype, **load_options(model, dtype)}
    # The family's own class, not AutoPipelineForText2Image: the families table decides
    # what each family is (the auto mapping lacks some and maps others to other tasks).
    spec = family_spec(model.family)
    text2img = pipeline_class(spec.text2img)
    if model.single_file and spec.single_file_transformer is not None:
        # A transformer-only checkpoint (Z-Image): the file is the denoiser, every other
        # component is the config folder's (the configuration requires the folder).
        assert model.single_file_config is not None
        if "transformer" not in kwargs:  # one from load_options (quantized) would win
            transformer_class = getattr(diffusers, spec.single_file_transformer)
            kwargs["transformer"] = transformer_class.from_single_file(
                model.source,
                config=model.single_file_config,
                subfolder="transformer",
                **{_dtype_keyword(): dtype},
            )
        pipeline = text2img.from_pretrained(model.single_file_config, **kwargs)
    elif model.single_file:
        if model.single_file_config is not None:
            kwargs["config"] = model.single_file_config
        pipeline = text2img.from_single_file(model.source, **kwargs)
    else:
        if model.variant is not None:
            kwargs["variant"] = model.variant
        pipeline = text2img.from_pretrained(model.source, **kwargs)
    if model.scheduler is not None:
        scheduler_class = getattr(diffusers, model.scheduler)
        pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)
    place_and_tune(pipeline, model, device)  # .to(device), or offload hooks; VAE, attention
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _dtype_keyword() -> str:
    """diffusers 0.36+ takes ``dtype`` (``torch_dtype`` is deprecated); older ones only
    ``torch_dtype``."""
    try:
        deprecation = importlib.import_module("diffusers.utils.deprecation_utils")
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation, "_resolve_dtype") else "torch_dtype"


def estimate_bytes(pipeline: Any) -> int:
    """Bytes held by the parameters and buffers of the pipeline's torch modules."""
    total = 0
    seen: set[int] = set()
    for component in getattr(pipeline, "components", {}).values():
        if not isinstance(component, torch.nn.Module) or id(component) in seen:
            continue
        seen.add(id(component))
        for tensor in (*component.parameters(), *component.buffers()):
            total += tensor.numel() * tensor.element_size()
    return total


@dataclass(eq=False)
class LoadedModel:
    """A loaded model: its text-to-image pipeline, the img2img view of it, its adapters."""

    name: str
    config: ModelConfig
    text2img: Any
    size_bytes: int
    #: LoRA adapter names loaded into this pipeline (they stay loaded, disabled when unused).
    loras: set[str] = field(default_factory=set)
    _img2img: Any = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    #: The pipeline's peft LoRA layers, found after each LoRA load; None: switch them through
    #: diffusers' pipeline methods instead (layers without the attributes relied on).
    _lora_layers: tuple[Any, ...] | None = ()

    def activate_loras(self, loras: Sequence[tuple[str, float]]) -> None:
        """Make exactly ``loras`` ((name, weight) pairs, names loaded with ``ensure_loras``)
        the active adapters of this model, or none (the base model) for ``[]``.

        Same state as ``enable_lora()`` + ``set_adapters(names, adapter_weights=weights)``
        (``disable_lora()`` for none) of diffusers, without walking every module. Raises
        ``EngineError`` for a name not loaded, or for adapters on a model already unloaded.
        """
        with self._lock:
            missing = [name for name, _ in loras if name not in self.loras]
            if missing:
                raise EngineError(f"LoRA {missing[0]!r} is not loaded into model {self.name!r}")
            pipeline = self.text2img
            if pipeline is None:
                if loras:
                    raise EngineError(f"model {self.name!r} was unloaded")
                return  # a dropped pipeline has no state left to reset
            layers = self._lora_layers
            if layers is None:
                _activate_through_diffusers(pipeline, loras)
                return
            if not loras:
                for layer in layers:
                    layer._disable_adapters = True
                return
            names = [name for name, _ in loras]
            for layer in layers:
                # What peft's set_adapter sets, minus its requires_grad walk (inference only).
                layer._active_adapter = list(names)
                for name, weight in loras:
                    layer.set_scale(name, weight)  # no-op on layers this adapter lacks
                layer._disable_adapters = False

    def img2img(self) -> Any:
        """The image-to-image pipeline over the same modules (``from_pipe``: no copy)."""
        with self._lock:
            if self._img2img is None:
                class_name = family_spec(self.config.family).img2img
                if class_name is None:
                    raise EngineError(f"model {self.name!r} cannot alter images")
                try:
                    pipeline = pipeline_class(class_name).from_pipe(self.text2img)
                except (ValueError, TypeError) as exc:
                    raise EngineError(f"model {self.name!r} cannot alter images: {exc}") from exc
                pipeline.set_progress_bar_config(disable=True)
                self._img2img = pipeline
            return self._img2img

    def _release(self) -> None:
        self.text2img = None
        self._img2img = None
        self._lora_layers = ()


class PipelineCache:
    """Loads each configured model once and keeps the most recently used ones.

    ``loader`` replaces ``load_pipeline`` (the default): it receives a model config, the
    device and the dtype and returns a text-to-image pipeline.
    """

    def __init__(
        self,
        config: EngineConfig,
        device: str,
        dtype: torch.dtype,
        *,
        loader: PipelineLoader | None = None,
    ) -> None:
        self._config = config
        self._device = device
        self._dtype = dtype
        self._loader: PipelineLoader = loader if loader is not None else load_pipeline
        self._lock = threading.Lock()  # guards the two dicts below; never held while loading
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._key_locks: dict[str, threading.Lock] = {}
        self._loads = 0

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def loads(self) -> int:
        """Models loaded since this cache was made (a cache hit is not a load; a model
        evicted and needed again counts again): how a scheduler's affinity shows."""
        return self._loads

    def loaded(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return list(self._entries)

    def loaded_bytes(self) -> int:
        """Estimated bytes of weights held by all loaded models."""
        with self._lock:
            return sum(entry.size_bytes for entry in self._entries.values())

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name`` (loading it on first use). Raises ``ConfigError`` for a
        name not in the configuration, ``EngineError`` when loading fails."""
        model = self._config.models.get(name)
        if model is None:
            raise ConfigError(f"model {name!r} is not in the engine configuration")
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                self._entries.move_to_end(name)
                return entry
            key_lock = self._key_locks.setdefault(name, threading.Lock())
        with key_lock:
            with self._lock:  # another thread may have loaded it while we waited
                entry = self._entries.get(name)
                if entry is not None:
                    self._entries.move_to_end(name)
                    return entry
                # Make room first, so the new weights never sit beside a full cache.
                evicted = self._pop_lru(keep_at_most=self._config.cache.max_models - 1)
            self._free(evicted)
            entry = self._load(name, model)
            with self._lock:
                self._entries[name] = entry
                self._loads += 1
                evicted = self._pop_over_budget(keep=name)
            self._free(evicted)
            return entry

    def ensure_loras(self, entry: LoadedModel, names: Sequence[str]) -> None:
        """Load the named LoRAs into ``entry`` as adapters (once each), left disabled."""
        with entry._lock:
            missing = [name for name in names if name not in entry.loras]
            if not missing:
                return
            pipeline = entry.text2img
            if pipeline is None:
                raise EngineError(f"model {entry.name!r} was unloaded")
            try:
                for name in missing:
                    lora = self._config.loras.get(name)
                    if lora is None:
                        raise ConfigError(f"LoRA {name!r} is not in the engine configuration")
                    self._load_lora(entry, pipeline, name, lora)
                pipeline.disable_lora()
                entry.size_bytes = estimate_bytes(pipeline)
            finally:
                # New adapters may wrap new modules; a failed load may have left some.
                if entry.text2img is not None:
                    entry._lora_layers = _find_lora_layers(entry.name, pipeline, entry.loras)

    def evict(self, name: str) -> bool:
        """Drop model ``name`` now; True when it was loaded."""
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is None:
            return False
        self._free([entry])
        return True

    def clear(self) -> None:
        """Drop every loaded model."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        self._free(entries)

    # ----- internals -------------------------------------------------------------------

    def _load(self, name: str, model: ModelConfig) -> LoadedModel:
        logger.info("loading model %r (%s)", name, model.family.value)
        try:
            pipeline = self._loader(
                model, self._device, model_dtype(model, self._device, self._dtype)
            )
        except torch.OutOfMemoryError as exc:
            _collect(self._device)
            raise EngineError(f"model {name!r} does not fit in memory") from exc
        except Exception as exc:  # diffusers/transformers/hub raise many types
            # The detail (paths, hub errors) goes to the operator's log, not to customers.
            logger.error("loading model %r from %s failed: %s", name, model.source, exc)
            raise EngineError(f"model {name!r} could not be loaded ({type(exc).__name__})") from exc
        size = estimate_bytes(pipeline)
        logger.info("model %r loaded: about %.1f MiB of weights", name, size / 2**20)
        return LoadedModel(name=name, config=model, text2img=pipeline, size_bytes=size)

    def _load_lora(self, entry: LoadedModel, pipeline: Any, name: str, lora: LoraConfig) -> None:
        logger.info("loading LoRA %r into model %r", name, entry.name)
        try:
            with warnings.catch_warnings():
                # peft warns whenever a model gets a second adapter: named adapters side by
                # side are exactly what this cache wants.
                warnings.filterwarnings(
                    "ignore",
                    message="Already found a `peft_config` attribute",
                    category=UserWarning,
                )
                pipeline.load_lora_weights(lora.source, adapter_name=name)
        except Exception as exc:
            logger.error("loading LoRA %r from %s failed: %s", name, lora.source, exc)
            try:  # leave no half-injected adapter behind
                if name in _adapter_names(pipeline):
                    pipeline.delete_adapters([name])
                pipeline.disable_lora()
            except Exception:
                logger.exception("cleaning up LoRA %r failed; unloading model", name)
                self.evict(entry.name)
            raise EngineError(f"LoRA {name!r} could not be loaded ({type(exc).__name__})") from exc
        entry.loras.add(name)

    def _pop_lru(self, *, keep_at_most: int) -> list[LoadedModel]:
        evicted: list[LoadedModel] = []
        while len(self._entries) > max(keep_at_most, 0):
            _, entry = self._entries.popitem(last=False)
            evicted.append(entry)
        return evicted

    def _pop_over_budget(self, *, keep: str) -> list[LoadedModel]:
        evicted = self._pop_lru_except(keep, self._config.cache.max_models)
        budget_mb = self._config.cache.max_memory_mb
        if budget_mb is not None:
            budget = budget_mb * 2**20
            while sum(e.size_bytes for e in self._entries.values()) > budget:
                victims = [name for name in self._entries if name != keep]
                if not victims:
                    logger.warning(
                        "model %r alone needs about %.0f MiB, above cache.max_memory_mb=%d",
                        keep,
                        self._entries[keep].size_bytes / 2**20,
                        budget_mb,
                    )
                    break
                evicted.append(self._entries.pop(victims[0]))
        return evicted

    def _pop_lru_except(self, keep: str, limit: int) -> list[LoadedModel]:
        evicted: list[LoadedModel] = []
        while len(self._entries) > limit:
            victim = next(name for name in self._entries if name != keep)
            evicted.append(self._entries.pop(victim))
        return evicted

    def _free(self, entries: list[LoadedModel]) -> None:
        if not entries:
            return
        for entry in entries:
            logger.info("unloading model %r", entry.name)
            with entry._lock:
                entry._release()
        _collect(self._device)


def _find_lora_layers(model: str, pipeline: Any, loaded: set[str]) -> tuple[Any, ...] | None:
    """The peft LoRA layers in the pipeline's torch modules (each once), or None when they
    cannot be switched directly (attributes missing in this peft version, merged weights,
    adapters without layers): ``activate_loras`` then goes through diffusers."""
    if not loaded:
        return ()
    try:
        tuners: Any = importlib.import_module("peft.tuners.tuners_utils")
    except ImportError:
        return None
    found: dict[int, Any] = {}
    for component in getattr(pipeline, "components", {}).values():
        if isinstance(component, torch.nn.Module):
            for module in component.modules():
                if isinstance(module, tuners.BaseTunerLayer):
                    found.setdefault(id(module), module)
    layers = tuple(found.values())
    if layers and all(_switchable(layer) for layer in layers):
        return layers
    logger.info("model %r: switching LoRAs through diffusers (peft layers not as expected)", model)
    return None


def _switchable(layer: Any) -> bool:
    return (
        isinstance(getattr(layer, "_disable_adapters", None), bool)
        and hasattr(layer, "_active_adapter")
        and callable(getattr(layer, "set_scale", None))
        and not getattr(layer, "merged", True)
    )


def _activate_through_diffusers(pipeline: Any, loras: Sequence[tuple[str, float]]) -> None:
    """The slow, always-right way: diffusers' pipeline-level adapter methods."""
    if loras:
        pipeline.enable_lora()
        pipeline.set_adapters(
            [name for name, _ in loras], adapter_weights=[weight for _, weight in loras]
        )
    else:
        pipeline.disable_lora()


def _adapter_names(pipeline: Any) -> set[str]:
    listed = pipeline.get_list_adapters()
    return {name for names in listed.values() for name in names}


def _collect(device: str) -> None:
    """Return freed memory: Python objects first, then the CUDA caching allocator."""
    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
