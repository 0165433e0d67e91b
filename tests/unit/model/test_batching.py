"""The batch scheduler, the per-row batching pieces and the engine options, without a model."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from clinicflow.model.batching import (
    BatchScheduler,
    GenerationOutput,
    GenerationRequest,
    RowLimits,
    RowStreamer,
    left_pad,
)
from clinicflow.model.engine import EngineOptions, PrefixStore, bucket


def _echo(batches: list[list[GenerationRequest]]):  # type: ignore[no-untyped-def]
    def run(requests: list[GenerationRequest]) -> list[GenerationOutput]:
        batches.append(requests)
        time.sleep(0.01)
        return [
            GenerationOutput(tokens=list(r.prompt_ids), batch_size=len(requests), generation_s=0.01)
            for r in requests
        ]

    return run


def test_concurrent_requests_share_a_batch_and_each_caller_gets_its_own_output() -> None:
    batches: list[list[GenerationRequest]] = []
    scheduler = BatchScheduler(_echo(batches), max_batch=8, window_s=0.2)
    results: dict[int, list[int]] = {}

    def call(i: int) -> None:
        results[i] = scheduler.generate(GenerationRequest(prompt_ids=[i, i], max_new_tokens=1)).tokens

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scheduler.close()
    assert results == {i: [i, i] for i in range(12)}
    assert sum(len(b) for b in batches) == 12
    assert max(len(b) for b in batches) <= 8 and scheduler.largest_batch > 1


def test_incompatible_requests_run_in_separate_groups() -> None:
    batches: list[list[GenerationRequest]] = []
    scheduler = BatchScheduler(_echo(batches), window_s=0.2)
    futures = [
        scheduler.submit(GenerationRequest(prompt_ids=[1], max_new_tokens=1)),
        scheduler.submit(GenerationRequest(prompt_ids=[2], max_new_tokens=1, temperature=0.7)),
        scheduler.submit(GenerationRequest(prompt_ids=[3], max_new_tokens=1, stop_strings=("\n",))),
        scheduler.submit(GenerationRequest(prompt_ids=[4], max_new_tokens=1)),
    ]
    assert [f.result(timeout=10).tokens for f in futures] == [[1], [2], [3], [4]]
    scheduler.close()
    assert sorted([r.prompt_ids[0] for r in b] for b in batches) == [[1, 4], [2], [3]]


def test_a_failing_batch_fails_each_of_its_callers_and_the_scheduler_goes_on() -> None:
    calls = []

    def run(requests: list[GenerationRequest]) -> list[GenerationOutput]:
        calls.append(len(requests))
        if requests[0].prompt_ids == [0]:
            raise RuntimeError("out of memory")
        return [GenerationOutput(tokens=[7], batch_size=1, generation_s=0.0) for _ in requests]

    scheduler = BatchScheduler(run, window_s=0.0)
    with pytest.raises(RuntimeError, match="out of memory"):
        scheduler.generate(GenerationRequest(prompt_ids=[0], max_new_tokens=1))
    assert scheduler.generate(GenerationRequest(prompt_ids=[1], max_new_tokens=1)).tokens == [7]
    scheduler.close()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(GenerationRequest(prompt_ids=[1], max_new_tokens=1))


def test_rows_are_left_padded_and_stop_at_their_own_limits() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]] and mask == [[1, 1, 1], [0, 0, 1]]
    limits = RowLimits(prompt_length=3, limits=[1, 3])
    assert limits(torch.zeros(2, 4, dtype=torch.long), None).tolist() == [True, False]
    assert limits(torch.zeros(2, 6, dtype=torch.long), None).tolist() == [True, True]


def test_the_streamer_hands_each_row_its_tokens_until_it_stops() -> None:
    seen: list[int] = []
    streamer = RowStreamer([seen.append, None], stop_ids=[1], limits=[5, 5])
    streamer.put(torch.tensor([[9, 9], [9, 9]]))
    for step in ([4, 4], [1, 4], [0, 4]):
        streamer.put(torch.tensor(step))
    streamer.end()
    assert seen == [4, 1]


def test_prefix_store_reuses_the_longest_prefix_shared_with_a_recent_prompt() -> None:
    store = PrefixStore(min_tokens=3, capacity=2)
    system = [1, 2, 3, 4]
    assert store.shared_prefix([*system, 9]) == 0
    store.remember([*system, 9])
    assert store.shared_prefix([*system, 8, 8]) == 4
    assert store.shared_prefix([1, 2, 7]) == 0
    store.add(system, "kv")
    assert store.lookup([*system, 5]) == (4, "kv") and store.hits == 1
    assert store.lookup(system) is None


def test_the_fast_path_is_off_on_the_cpu_unless_forced() -> None:
    assert EngineOptions.for_device("cpu") == EngineOptions()
    assert EngineOptions.for_device("cuda:0").compile and EngineOptions.for_device("cuda").static_cache
    forced = EngineOptions.for_device("cpu", "on")
    assert forced.static_cache and forced.prefix_cache and not forced.compile
    assert EngineOptions.for_device("cuda", "off") == EngineOptions()
    assert [bucket(n) for n in (1, 3, 8, 33)] == [1, 4, 8, 64]
    assert bucket(300, multiple=256) == 512
