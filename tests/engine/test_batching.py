"""Several jobs in one pipeline call (``Engine.generate_batch``) on the tiny SD 1.5 and SDXL
models: each job gets the images it would get alone, its own progress and cancellation, and
the pipeline is never entered from two threads at once."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from _engine_support import MakeJob, TinyModels, tiny_config_data
from PIL import Image

from nostr_imagegen.engine import BatchRequest, Engine, EngineConfig, GenerationResult
from nostr_imagegen.engine.pipelines import load_pipeline
from nostr_imagegen.engine_config import ModelConfig
from nostr_imagegen.errors import EngineError, JobCancelled, JobRejected, NostrImagegenError

pytestmark = pytest.mark.engine

MODELS = ["tiny", "tiny-xl"]
#: The prompt that makes the watched pipeline fail (a whole call failing).
BROKEN = "this prompt breaks the pipeline"


@dataclass
class PipelineWatch:
    """What the watched pipelines saw: the batch size of each call, and the most calls
    inside a pipeline at once."""

    calls: list[int] = field(default_factory=list)
    inside: int = 0
    most_inside: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def watched(self, pipeline: Any) -> Any:
        """``pipeline`` as an instance of a subclass whose ``__call__`` is watched."""
        original = type(pipeline).__call__

        @functools.wraps(original)  # keeps the signature the engine filters arguments by
        def call(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            prompt = kwargs["prompt"]
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            with self.lock:
                self.inside += 1
                self.most_inside = max(self.most_inside, self.inside)
                self.calls.append(len(prompts))
            try:
                if BROKEN in prompts:
                    raise RuntimeError("the pipeline broke")
                return original(pipe, *args, **kwargs)
            finally:
                with self.lock:
                    self.inside -= 1

        pipeline.__class__ = type(type(pipeline).__name__, (type(pipeline),), {"__call__": call})
        return pipeline


@pytest.fixture(scope="module")
def watch() -> PipelineWatch:
    return PipelineWatch()


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, watch: PipelineWatch) -> Engine:
    data = tiny_config_data(tiny_models)
    for name in MODELS:
        data["models"][name].update(max_batch=4, max_images=2)
    return Engine(
        EngineConfig.from_mapping(data),
        loader=lambda model, device, dtype: watch.watched(load_pipeline(model, device, dtype)),
    )


@pytest.fixture
def calls(watch: PipelineWatch) -> list[int]:
    """The batch size of each pipeline call made during the test."""
    watch.calls.clear()
    return watch.calls


def pixels(image: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(image, dtype=np.int16)


def assert_close(batched: Image.Image, solo: Image.Image) -> None:
    """Batch shapes change results by about 1e-5: a few uint8 levels at most, rarely."""
    difference = np.abs(pixels(batched) - pixels(solo))
    assert difference.max() <= 3
    assert difference.mean() < 0.05


def results(outcomes: list[GenerationResult | NostrImagegenError]) -> list[GenerationResult]:
    assert all(isinstance(outcome, GenerationResult) for outcome in outcomes), outcomes
    return [outcome for outcome in outcomes if isinstance(outcome, GenerationResult)]


@pytest.mark.parametrize("model", MODELS)
def test_a_batch_gives_each_job_the_images_it_gets_alone(
    engine: Engine, make_job: MakeJob, calls: list[int], model: str
) -> None:
    jobs = [
        make_job(("model", model), ("seed", str(seed)), prompt=f"a {animal} on a hill")
        for seed, animal in [(11, "goat"), (12, "heron"), (13, "newt")]
    ]
    batched = results(engine.generate_batch([BatchRequest(job) for job in jobs]))
    assert calls == [3]  # one pipeline call for the three jobs
    for job, result in zip(jobs, batched, strict=True):
        assert (result.model, result.prompt, result.seed) == (model, job.prompt, job.seed)
        solo = engine.generate(job)
        assert_close(result.images[0], solo.images[0])
    # Three pictures, not one repeated.
    assert not np.array_equal(pixels(batched[0].images[0]), pixels(batched[1].images[0]))


@pytest.mark.parametrize("model", MODELS)
def test_several_images_per_job_and_negative_prompts_stay_with_their_job(
    engine: Engine, make_job: MakeJob, calls: list[int], model: str
) -> None:
    jobs = [
        make_job(
            ("model", model), ("seed", seed), ("num_images", "2"), ("negative_prompt", negative)
        )
        for seed, negative in [("30", "blurry hands"), ("50", "dull colours")]
    ]
    first, second = results(engine.generate_batch([BatchRequest(job) for job in jobs]))
    assert calls == [2]
    assert (first.seeds, second.seeds) == ((30, 31), (50, 51))
    assert (first.negative_prompt, second.negative_prompt) == ("blurry hands", "dull colours")
    for job, result in zip(jobs, (first, second), strict=True):
        solo = engine.generate(job)
        assert solo.seeds == result.seeds
        for batched_image, solo_image in zip(result.images, solo.images, strict=True):
            assert_close(batched_image, solo_image)


def test_each_job_keeps_its_seed_and_one_without_gets_its_own(
    engine: Engine, make_job: MakeJob
) -> None:
    seeded, unseeded = make_job(("seed", "7")), make_job()
    first, second = results(engine.generate_batch([BatchRequest(seeded), BatchRequest(unseeded)]))
    assert first.seed == 7
    assert second.seed != 7
    assert second.seeds == (second.seed,)
    # Same prompt, different seeds: different pictures; the drawn seed reproduces alone.
    assert not np.array_equal(pixels(first.images[0]), pixels(second.images[0]))
    again = engine.generate(make_job(("seed", str(second.seed))))
    assert_close(second.images[0], again.images[0])


def test_each_job_hears_its_own_progress(engine: Engine, make_job: MakeJob) -> None:
    seen: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    outcomes = engine.generate_batch(
        [
            BatchRequest(
                make_job(("steps", "3"), prompt=f"job {name}"),
                progress=lambda step, total, name=name: seen[name].append((step, total)),
            )
            for name in seen
        ]
    )
    results(outcomes)
    assert seen == {"a": [(1, 3), (2, 3), (3, 3)], "b": [(1, 3), (2, 3), (3, 3)]}


def test_a_job_cancelled_mid_batch_stops_alone_and_the_others_finish(
    engine: Engine, make_job: MakeJob
) -> None:
    jobs = [make_job(("steps", "3"), ("seed", str(seed))) for seed in (1, 2, 3)]
    cancel = threading.Event()
    heard: list[int] = []

    def cancel_at_first_step(step: int, total: int) -> None:
        heard.append(step)
        cancel.set()  # the customer of the middle job cancels while step 1 runs

    outcomes = engine.generate_batch(
        [
            BatchRequest(jobs[0]),
            BatchRequest(jobs[1], progress=cancel_at_first_step, cancel=cancel),
            BatchRequest(jobs[2]),
        ]
    )
    assert isinstance(outcomes[1], JobCancelled)
    assert heard == [1]  # not told of steps it no longer runs
    for index in (0, 2):
        result = outcomes[index]
        assert isinstance(result, GenerationResult)
        assert_close(result.images[0], engine.generate(jobs[index]).images[0])


def test_when_every_job_is_cancelled_the_call_stops_at_the_next_step(
    engine: Engine, make_job: MakeJob
) -> None:
    steps_run: list[int] = []
    flags = [threading.Event(), threading.Event()]

    def cancel_all(step: int, total: int) -> None:
        steps_run.append(step)
        for flag in flags:
            flag.set()

    outcomes = engine.generate_batch(
        [
            BatchRequest(make_job(("steps", "4"), ("lora", "noise-a")), cancel_all, flags[0]),
            BatchRequest(make_job(("steps", "4"), ("lora", "noise-a")), cancel=flags[1]),
        ]
    )
    assert all(isinstance(outcome, JobCancelled) for outcome in outcomes)
    assert steps_run == [1]  # 1 of 4 steps ran
    # The LoRA is off again and the engine serves the next job as before.
    plain = make_job(("seed", "9"))
    (batched,) = results(engine.generate_batch([BatchRequest(plain)]))
    assert_close(batched.images[0], engine.generate(plain).images[0])


def test_a_job_cancelled_before_the_call_gets_job_cancelled(
    engine: Engine, make_job: MakeJob
) -> None:
    cancelled = threading.Event()
    cancelled.set()
    outcomes = engine.generate_batch(
        [BatchRequest(make_job(), cancel=cancelled), BatchRequest(make_job(("seed", "4")))]
    )
    assert isinstance(outcomes[0], JobCancelled)
    assert isinstance(outcomes[1], GenerationResult)
    assert outcomes[1].seed == 4


def test_a_broken_progress_callback_fails_only_its_own_job(
    engine: Engine, make_job: MakeJob
) -> None:
    def broken(step: int, total: int) -> None:
        raise KeyError("no such feedback channel")

    outcomes = engine.generate_batch(
        [BatchRequest(make_job(), progress=broken), BatchRequest(make_job(("seed", "5")))]
    )
    assert isinstance(outcomes[0], EngineError)
    assert "KeyError" in str(outcomes[0])
    assert isinstance(outcomes[1], GenerationResult)


def test_a_rejected_job_is_its_own_outcome_and_the_rest_run(
    engine: Engine, make_job: MakeJob
) -> None:
    outcomes = engine.generate_batch(
        [BatchRequest(make_job(("seed", "3"))), BatchRequest(make_job(("model", "no-such")))]
    )
    assert isinstance(outcomes[0], GenerationResult)
    assert outcomes[0].seed == 3
    assert isinstance(outcomes[1], JobRejected)
    assert "no-such" in str(outcomes[1])


def test_a_failed_call_is_every_jobs_outcome_and_the_engine_goes_on(
    engine: Engine, make_job: MakeJob
) -> None:
    outcomes = engine.generate_batch(
        [BatchRequest(make_job()), BatchRequest(make_job(prompt=BROKEN))]
    )
    assert len(outcomes) == 2
    assert all(isinstance(o, EngineError) and "the pipeline broke" in str(o) for o in outcomes)
    results(engine.generate_batch([BatchRequest(make_job())]))


def test_jobs_that_cannot_share_a_call_are_a_programmers_error(
    engine: Engine, make_job: MakeJob
) -> None:
    with pytest.raises(ValueError, match="at least one"):
        engine.generate_batch([])
    with pytest.raises(ValueError, match="plans differ"):
        engine.generate_batch(
            [BatchRequest(make_job(("steps", "2"))), BatchRequest(make_job(("steps", "3")))]
        )
    with pytest.raises(ValueError, match="plans differ"):  # one with a negative prompt
        engine.generate_batch(
            [BatchRequest(make_job()), BatchRequest(make_job(("negative_prompt", "fog")))]
        )
    with pytest.raises(ValueError, match="alters an image"):
        engine.generate_batch([BatchRequest(make_job(image_url="https://example.com/a.png"))])
    with pytest.raises(ValueError, match="max_batch=4"):
        engine.generate_batch([BatchRequest(make_job()) for _ in range(5)])


def test_a_job_with_a_refine_pass_runs_alone(tiny_models: TinyModels, make_job: MakeJob) -> None:
    data = tiny_config_data(tiny_models)
    data["models"]["tiny"]["refine"] = {"strength": 0.5, "steps": 2}
    refining = Engine(EngineConfig.from_mapping(data))
    with pytest.raises(ValueError, match="runs alone"):
        refining.generate_batch([BatchRequest(make_job(("upscale", "2")))])


def test_solo_jobs_and_batches_from_two_threads_never_share_the_pipeline(
    engine: Engine, make_job: MakeJob, watch: PipelineWatch
) -> None:
    watch.most_inside = 0
    failures: list[BaseException] = []

    def repeat(work: Any) -> None:
        try:
            for _ in range(4):
                work()
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [
        threading.Thread(target=repeat, args=(lambda: engine.generate(make_job()),)),
        threading.Thread(
            target=repeat,
            args=(lambda: results(engine.generate_batch([BatchRequest(make_job())] * 2)),),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert watch.most_inside == 1


def test_loaded_models_max_batch_and_the_load_count(
    tiny_models: TinyModels, make_job: MakeJob
) -> None:
    data = tiny_config_data(tiny_models, cache={"max_models": 1})
    data["models"]["tiny"]["max_batch"] = 3
    fresh = Engine(EngineConfig.from_mapping(data))
    assert (fresh.loaded_models(), fresh.loads) == (frozenset(), 0)
    assert fresh.max_batch("tiny") == 3
    assert fresh.max_batch("tiny-xl") == ModelConfig.model_fields["max_batch"].default
    fresh.generate(make_job())
    fresh.generate_batch([BatchRequest(make_job())])
    assert (fresh.loaded_models(), fresh.loads) == (frozenset({"tiny"}), 1)  # hits: no load
    fresh.generate(make_job(("model", "tiny-xl")))
    assert (fresh.loaded_models(), fresh.loads) == (frozenset({"tiny-xl"}), 2)
    fresh.generate(make_job())  # evicted by the cache bound: loaded again
    assert (fresh.loaded_models(), fresh.loads) == (frozenset({"tiny"}), 3)
