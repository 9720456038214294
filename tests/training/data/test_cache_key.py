"""The cache's data key: every setting that changes which images a split holds is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import DataConfig
from training.data.cache import data_key


@pytest.mark.parametrize(
    "changes",
    [
        {"fold": 1, "folds": 3},
        {"folds": 3},
        {"test_fraction": 0.2},
        {"test_seed": 4},
        {"split_seed": 1},
        {"coco": {"test_annotations": Path("test.json")}},
        {"csv": {"test_file": Path("test.csv"), "test_images": Path("test")}},
    ],
    ids=lambda c: ",".join(c),
)
def test_data_key_changes_with_the_split_settings(changes):
    base = DataConfig()
    # a fold model, the test hold-out or a test file changes the images: another cache entry
    assert data_key(DataConfig.model_validate(base.model_dump() | changes)) != data_key(base)


def test_data_key_ignores_batching():
    # batching fields change no image: the same cache entry
    assert data_key(DataConfig(batch_size=4, num_workers=0)) == data_key(DataConfig())
