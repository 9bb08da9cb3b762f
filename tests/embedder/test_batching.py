"""The dynamic batcher's logic, with an injected clock and a stand-in model function.

The stand-in is a plain deterministic function (vector = [n_tokens, seq]) that can be held busy with
a threading.Event: it lets the tests decide exactly what is queued while a batch runs. The real model
runs through the batcher in test_server.py.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from searchgw.embedder.batching import DynamicBatcher, PendingInput, plan_batch
from searchgw.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from searchgw.testing import ManualClock


@dataclass(frozen=True)
class Item:
    n_tokens: int
    tag: int = 0


def pending(lengths: list[int]) -> list[PendingInput]:
    return [PendingInput(item=Item(n), future=None, enqueued_at=0.0, deadline=None, seq=i)  # type: ignore[arg-type]
            for i, n in enumerate(lengths)]


def test_plan_takes_the_oldest_and_groups_by_length_within_the_token_budget():
    waiting = pending([10, 200, 12, 11, 190])
    batch = plan_batch(waiting, max_batch_tokens=40, max_batch_size=8)
    assert [p.n_tokens for p in batch][0] == 10
    assert sorted(p.n_tokens for p in batch) == [10, 11, 12]
    assert max(p.n_tokens for p in batch) * len(batch) <= 40


def test_plan_always_serves_a_long_oldest_input_and_respects_batch_size():
    waiting = pending([300, 5, 5, 5])
    assert [p.n_tokens for p in plan_batch(waiting, max_batch_tokens=300, max_batch_size=8)] == [300]
    many = pending([5] * 20)
    batch = plan_batch(many, max_batch_tokens=10_000, max_batch_size=8)
    assert len(batch) == 8
    assert [p.seq for p in batch] == list(range(8))


class HeldModel:
    """Deterministic vectors; `hold` blocks the next runs until released. Records batch sizes."""

    def __init__(self) -> None:
        self.batches: list[list[Item]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = False

    def __call__(self, items: list[Item]) -> np.ndarray:
        self.batches.append(list(items))
        self.started.set()
        self.gate.wait(timeout=10)
        if self.fail:
            raise RuntimeError("model run failed")
        return np.array([[item.n_tokens, item.tag] for item in items], dtype=np.float32)


@pytest.fixture
async def rig():
    model = HeldModel()
    clock = ManualClock(100.0)
    executor = ThreadPoolExecutor(max_workers=1)
    batcher = DynamicBatcher(model, executor, max_batch_tokens=1000, max_batch_size=16, max_queue_size=8,
                             clock=clock)
    batcher.start()
    yield model, clock, batcher
    model.gate.set()
    await batcher.stop()
    executor.shutdown(wait=True)


async def wait_for_run_start(model: HeldModel) -> None:
    await asyncio.get_running_loop().run_in_executor(None, model.started.wait, 10)
    model.started.clear()


async def test_an_idle_model_runs_a_request_at_once(rig):
    model, clock, batcher = rig
    [result] = await batcher.submit([Item(7, tag=1)])
    assert result.vector.tolist() == [7.0, 1.0]
    assert [len(b) for b in model.batches] == [1]


async def test_arrivals_while_busy_form_the_next_batch_in_one_run(rig):
    model, clock, batcher = rig
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit([Item(3, tag=0)]))
    await wait_for_run_start(model)
    rest = [asyncio.ensure_future(batcher.submit([Item(4, tag=i)])) for i in range(1, 6)]
    await asyncio.sleep(0)  # let the submits enqueue (no time passes: the clock is manual)
    clock.now += 0.25
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert [len(b) for b in model.batches] == [1, 5]
    assert [r[0].vector[1] for r in results] == [0, 1, 2, 3, 4, 5]
    assert results[1][0].queue_seconds == pytest.approx(0.25)


async def test_a_full_queue_refuses_the_whole_request_and_queues_nothing(rig):
    model, clock, batcher = rig
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit([Item(3)]))
    await wait_for_run_start(model)
    waiting = asyncio.ensure_future(batcher.submit([Item(3)] * 6))
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted) as info:
        await batcher.submit([Item(3)] * 3)
    assert info.value.retry_after is not None
    assert batcher.queue_depth == 6
    model.gate.set()
    await asyncio.gather(first, waiting)


async def test_inputs_past_their_deadline_or_cancelled_are_dropped_before_the_model(rig):
    model, clock, batcher = rig
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit([Item(3)]))
    await wait_for_run_start(model)
    late = asyncio.ensure_future(batcher.submit([Item(5, tag=1)], deadline=clock.now + 0.1))
    gone = asyncio.ensure_future(batcher.submit([Item(5, tag=2)]))
    kept = asyncio.ensure_future(batcher.submit([Item(5, tag=3)], deadline=clock.now + 10))
    await asyncio.sleep(0)
    gone.cancel()
    clock.now += 1.0
    model.gate.set()
    await first
    with pytest.raises(DeadlineExceeded):
        await late
    [result] = await kept
    assert result.vector[1] == 3
    assert [item.tag for item in model.batches[1]] == [3]


async def test_repeated_model_failures_mark_the_worker_unhealthy_until_a_run_succeeds(rig):
    model, clock, batcher = rig
    seen: list[bool] = []
    batcher.add_health_listener(seen.append)
    model.fail = True
    for _ in range(3):
        with pytest.raises(Unavailable):
            await batcher.submit([Item(2)])
    assert seen == [False]
    assert not batcher.healthy
    model.fail = False
    [result] = await batcher.submit([Item(2)])  # still tried: a recovered model serves again
    assert result.vector[0] == 2
    assert seen == [False, True]
    assert batcher.healthy


async def test_requests_of_one_loop_turn_share_the_batch_that_starts_at_the_end_of_that_turn(rig):
    model, clock, batcher = rig
    model.gate.clear()
    calls = [asyncio.ensure_future(batcher.submit([Item(4, tag=i)])) for i in range(3)]
    await asyncio.sleep(0)  # one turn: the three submits run up to their awaits
    await asyncio.sleep(0)  # the end of that turn: one batch of all three is on the model
    assert (batcher.running, batcher.queue_depth) == (1, 0)
    model.gate.set()
    results = await asyncio.gather(*calls)
    assert [len(b) for b in model.batches] == [3]
    assert [r[0].vector.tolist() for r in results] == [[4.0, 0.0], [4.0, 1.0], [4.0, 2.0]]


async def test_two_runners_run_two_batches_at_once_and_each_caller_gets_its_own_vector():
    first, second = HeldModel(), HeldModel()
    for model in (first, second):
        model.gate.clear()
    executor = ThreadPoolExecutor(max_workers=2)
    batcher = DynamicBatcher(first, executor, max_batch_tokens=1000, max_batch_size=16, max_queue_size=8,
                             clock=ManualClock(0.0))
    batcher.add_runner(second)
    batcher.start()
    try:
        one = asyncio.ensure_future(batcher.submit([Item(3, tag=1)]))
        await asyncio.sleep(0)
        two = asyncio.ensure_future(batcher.submit([Item(5, tag=2)]))
        await wait_for_run_start(first)
        await wait_for_run_start(second)  # the second batch runs while the first is still held
        assert (batcher.running, batcher.queue_depth) == (2, 0)
        third = asyncio.ensure_future(batcher.submit([Item(7, tag=3)]))
        await asyncio.sleep(0)
        assert batcher.queue_depth == 1  # both runners busy: it waits
        second.gate.set()
        [[b], [c]] = await asyncio.gather(two, third)
        first.gate.set()
        [a] = await one
        assert [r.vector.tolist() for r in (a, b, c)] == [[3.0, 1.0], [5.0, 2.0], [7.0, 3.0]]
        assert len(first.batches) + len(second.batches) == 3
    finally:
        first.gate.set()
        second.gate.set()
        await batcher.stop()
        executor.shutdown(wait=True)
