"""Which epochs of a trial save a checkpoint (CheckpointClock), on a hand-driven clock."""

from __future__ import annotations

import pytest

from search import trainable
from search.trainable import CheckpointClock


@pytest.fixture
def clock(monkeypatch):
    """A settable monotonic clock for the module under test."""
    now = [100.0]
    monkeypatch.setattr(trainable.time, "monotonic", lambda: now[0])
    return now


def saved_epochs(clock, every_s: float, epoch_seconds: list[float]) -> list[int]:
    checkpoints = CheckpointClock(every_s, last_epoch=len(epoch_seconds))
    saved = []
    for epoch, seconds in enumerate(epoch_seconds, start=1):
        clock[0] += seconds
        if checkpoints.due(epoch):
            saved.append(epoch)
    return saved


def test_zero_interval_saves_every_epoch(clock):
    assert saved_epochs(clock, 0.0, [0.01, 0.01, 0.01]) == [1, 2, 3]


def test_short_epochs_save_once_per_interval_and_at_the_end(clock):
    # 2.5 s epochs, every 10 s: epoch 4 (10 s since the start), epoch 8 (10 s since epoch 4), the last (9)
    assert saved_epochs(clock, 10.0, [2.5] * 9) == [4, 8, 9]


def test_long_epochs_save_every_epoch(clock):
    assert saved_epochs(clock, 10.0, [12.0, 15.0, 11.0]) == [1, 2, 3]


def test_a_trial_shorter_than_the_interval_saves_nothing(clock):
    # nothing worth resuming, and no per-trial experiment snapshot forced in Tune
    assert saved_epochs(clock, 10.0, [1.0, 1.0, 1.0]) == []
