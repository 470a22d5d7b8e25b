"""Training batches made on a background thread are the batches the training loop would make.

The shipped weights must stay the ones the training command makes (issue 12), so moving batch
augmentation off the training thread may change the time a step takes, never a number.
"""

from __future__ import annotations

import pytest
import torch

from scp_node.model.train import BatchPrefetcher, training_batch

SIZE = 32


def _data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(n, 1, SIZE, SIZE, generator=gen)
    m = torch.ones(n, 2, SIZE, SIZE, dtype=torch.float16)
    m[:, 1] = torch.rand(n, SIZE, SIZE, generator=gen).half()
    y = 8 + torch.rand(n, 5, 2, generator=gen) * 16
    return x, m, y


def test_prefetched_batches_equal_the_training_loops_own() -> None:
    x, m, y = _data()
    gen = torch.Generator().manual_seed(3)
    inline = [training_batch(x, m, y, 4, gen) for _ in range(6)]
    prefetched = []
    for xb, target in BatchPrefetcher(x, m, y, batch=4, steps=6, seed=3, depth=2):
        torch.rand(100)  # the training thread's own draws (dropout) use the global RNG
        prefetched.append((xb, target))
    assert len(prefetched) == 6
    for (xa, ta), (xp, tp) in zip(inline, prefetched, strict=True):
        assert torch.equal(xa, xp) and torch.equal(ta, tp)
    assert not torch.equal(inline[0][0], inline[1][0])  # the batches do differ step to step
    assert ta.shape == (4, 6, SIZE, SIZE)
    assert torch.allclose(ta.sum(dim=(-2, -1)), torch.ones(4, 6), atol=1e-4)


def test_a_loop_that_stops_early_stops_the_thread() -> None:
    x, m, y = _data()
    batches = BatchPrefetcher(x, m, y, batch=4, steps=1000, seed=0, depth=1)
    for step, _ in enumerate(batches):
        if step == 2:
            break
    # leaving the loop closes the iterator, which stops and joins the producer thread
    assert batches._stop.is_set()
    assert not batches._thread.is_alive()


def test_a_failing_batch_is_raised_in_the_training_loop() -> None:
    x, m, y = _data()
    with pytest.raises(RuntimeError, match="making a training batch failed") as info:
        for _ in BatchPrefetcher(x[:0], m[:0], y[:0], batch=4, steps=5, seed=0):
            pass
    assert info.value.__cause__ is not None  # the thread's own error is kept as the cause
