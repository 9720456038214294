"""search.json and the results folder: written atomically, and a folder holding no started search is free."""

from __future__ import annotations

import pytest

from search.state import claim_out_dir, read_state, record_resources, stored_resources, write_atomic, write_state
from training.schema.errors import ConfigError
from training.schema.resources import TrialResources


def test_write_atomic_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "search.json"
    path.write_text("old")
    write_atomic(path, "new")
    # the file holds the new text, and the temporary it was written through is gone
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["search.json"]


@pytest.mark.parametrize("files", [[], ["space.yaml"], ["space.yaml", "search.json.tmp"]], ids=["empty", "space-only", "half-written"])
def test_claim_out_dir_takes_a_folder_holding_no_started_search(tmp_path, files):
    folder = tmp_path / "s"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("x")
    # a search killed before its search.json left nothing to resume: `run` may start it there again
    claim_out_dir(folder)


@pytest.mark.parametrize(
    "name, message",
    [
        ("search.json", "already holds a search; choose another --name, or resume it with"),
        ("summary.json", "already holds a search, finished"),
        ("notes.txt", "already holds other files (notes.txt)"),
    ],
)
def test_claim_out_dir_refuses_a_started_search_or_foreign_files(tmp_path, name, message):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "space.yaml").write_text("x")
    (folder / name).write_text("{}")
    # a started or finished search, or files that are not a search's, are never taken over
    with pytest.raises(ConfigError) as err:
        claim_out_dir(folder)
    assert err.value.key == "--name" and message in err.value.message


def test_read_state_says_how_to_carry_on(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    # nothing there: not a search's folder
    with pytest.raises(ConfigError, match="not a search's result folder"):
        read_state(folder)
    # killed before it started (space.yaml only): the error says to run it again, with the command
    (folder / "space.yaml").write_text("x")
    with pytest.raises(ConfigError, match="stopped before it started; run it again with python -m search run SPACE --name s"):
        read_state(folder)
    # once search.json is there, it is what resume reads
    write_state(folder, {"name": "s"})
    assert read_state(folder) == {"name": "s"}


def test_resources_round_trip_through_search_json(tmp_path):
    state = {"name": "s", "resources": None}
    # not decided yet (killed before Ray was up): nothing stored, the search resolves them
    assert stored_resources(state, cpu=2) is None
    record_resources(state, TrialResources(cpu=2, gpu=0.0))
    write_state(tmp_path, state)
    # what was recorded is what a resume reads back, whatever the space file's cpu says now
    assert stored_resources(read_state(tmp_path), cpu=8) == TrialResources(cpu=2, gpu=0.0)


@pytest.mark.parametrize(("gpu", "expected"), [(0.5, TrialResources(cpu=3, gpu=0.5)), (None, None)], ids=["decided", "undecided"])
def test_a_search_json_from_before_resources_were_recorded_still_resumes(gpu, expected):
    # an older search.json holds the resolved GPU share alone ("gpu"): its trials held the space file's cpu
    old = {"name": "s", "require_gpu": False, "gpu": gpu}
    assert stored_resources(old, cpu=3) == expected
    # recording them replaces the old field with the one value
    record_resources(old, TrialResources(cpu=3, gpu=0.5))
    assert "gpu" not in old and old["resources"] == {"cpu": 3, "gpu": 0.5}
