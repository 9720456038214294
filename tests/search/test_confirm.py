"""search/confirm.py: the sampler's trials, the reference's noise seeds, then the confirmation seeds,
as one stream of trials, over a real Optuna searcher."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from ray.tune.search import Searcher

from search.journal import TrialJournal
from search.roles import BASELINE, CONFIRM, NOISE, REPLICA_KEY
from search.spec import load_plan
from search.tuner import build_searcher, confirming

MAX_EPOCHS = 3  # MINIMAL_SPACE's scheduler.max_epochs


def make(minimal_space, write_space, tmp_path: Path, baseline: bool = True, **search):
    minimal_space["search"] = {
        "num_samples": 4,
        "noise_seeds": 2,
        "confirm": {"top": 1, "seeds": 2},
        "score": "last",
        **({"baseline": [{"optim.lr": 1.0e-3}]} if baseline else {}),
        **search,
    }
    plan = load_plan(write_space(minimal_space))
    return confirming(plan, build_searcher(plan), tmp_path / "trials.jsonl")


def finish(searcher, trial_id: str, values: list[float], error: bool = False) -> None:
    for epoch, value in enumerate(values[:-1], start=1):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "val/macro_f1": value})
    searcher.on_trial_complete(trial_id, {"epoch": len(values), "val/macro_f1": values[-1]}, error=error)


def roles(configs: dict[str, dict]) -> list[tuple[str | None, int | None]]:
    return [(c.get(REPLICA_KEY, {}).get("role"), c.get(REPLICA_KEY, {}).get("seed")) for c in configs.values()]


def test_the_baseline_comes_first_then_its_noise_seeds_then_the_sample(minimal_space, write_space, tmp_path):
    searcher = make(minimal_space, write_space, tmp_path)
    handed = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    # the baseline is the reference, its two noise seeds (base seed 0 + 1, + 2) follow at once, then sampling
    assert roles(handed) == [(BASELINE, None), (NOISE, 1), (NOISE, 2), (None, None)]
    assert handed["t1"][REPLICA_KEY]["group"] == "t0" and handed["t1"]["optim.lr"] == handed["t0"]["optim.lr"]


def test_confirmation_waits_for_the_sample_then_reruns_the_best_other_config(minimal_space, write_space, tmp_path):
    searcher = make(minimal_space, write_space, tmp_path)
    ids = [f"t{i}" for i in range(6)]  # baseline, 2 noise seeds, 3 sampled
    configs = {t: searcher.suggest(t) for t in ids}
    # the sample is handed out, but not finished: nothing more yet
    assert searcher.suggest("early") is None
    scores = {"t0": 0.9, "t1": 0.5, "t2": 0.5, "t3": 0.4, "t4": 0.7, "t5": 0.6}
    for t in ids:
        finish(searcher, t, [0.1, 0.2, scores[t]])
    confirmation = [searcher.suggest("c1"), searcher.suggest("c2")]
    # the best config other than the reference (t4: the baseline's 0.9 is its own) runs with fresh seeds
    assert [(c[REPLICA_KEY]["role"], c[REPLICA_KEY]["group"], c[REPLICA_KEY]["seed"]) for c in confirmation] == [
        (CONFIRM, "t4", 1),
        (CONFIRM, "t4", 2),
    ]
    assert confirmation[0]["optim.lr"] == configs["t4"]["optim.lr"]
    # then the searcher is done, and says so in the journal
    assert searcher.suggest("c3") == Searcher.FINISHED
    assert TrialJournal(tmp_path / "trials.jsonl").finished


def test_replicas_are_not_told_to_the_sampler(minimal_space, write_space, tmp_path):
    searcher = make(minimal_space, write_space, tmp_path)
    for t in ("t0", "t1", "t2"):  # the baseline and its noise seeds
        searcher.suggest(t)
        finish(searcher, t, [0.1, 0.2, 0.3])
    # only the baseline's epochs reached the sampler's searcher; its replicas' did not
    assert [h["epoch"] for h in searcher.searcher.history("t0")] == [1, 2, 3]
    assert searcher.searcher.history("t1") == [] and searcher.searcher.history("t2") == []
    assert searcher.state["sampled"] == ["t0"]


def test_without_a_baseline_the_first_config_to_run_its_full_budget_gets_the_noise_seeds(
    minimal_space, write_space, tmp_path
):
    searcher = make(minimal_space, write_space, tmp_path, baseline=False)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert REPLICA_KEY not in first and REPLICA_KEY not in second
    finish(searcher, "a", [0.1])  # stopped early: not the reference
    finish(searcher, "b", [0.1, 0.2, 0.3])  # its full budget
    noise = [searcher.suggest("n1"), searcher.suggest("n2")]
    assert [(n[REPLICA_KEY]["role"], n[REPLICA_KEY]["group"]) for n in noise] == [(NOISE, "b"), (NOISE, "b")]
    assert searcher.state["reference"] == "b"


def test_confirmation_skips_configs_equal_to_one_already_chosen(minimal_space, write_space, tmp_path):
    searcher = make(minimal_space, write_space, tmp_path, confirm={"top": 2, "seeds": 1}, noise_seeds=0)
    ids = [f"t{i}" for i in range(4)]
    for t in ids:
        searcher.suggest(t)
    # two sampled trials happened to get the same values: a second copy is no second config
    searcher.state["configs"]["t2"] = dict(searcher.state["configs"]["t1"])
    for t, score in zip(ids, (0.1, 0.9, 0.8, 0.7)):
        finish(searcher, t, [0.1, 0.2, score])
    chosen = searcher.top_configs()
    assert chosen == ["t1", "t3"]


def test_state_survives_tunes_save_and_restore(minimal_space, write_space, tmp_path):
    searcher = make(minimal_space, write_space, tmp_path)
    for t in ("t0", "t1"):
        searcher.suggest(t)
    saved = pickle.loads(pickle.dumps(searcher.get_state()))
    restored = make(minimal_space, write_space, tmp_path)
    restored.set_state(saved)
    # the queue goes on where it was: the second noise seed is next
    assert restored.suggest("t2")[REPLICA_KEY] == {"role": NOISE, "group": "t0", "seed": 2, "reference": True}


@pytest.mark.parametrize("confirm", [{"top": 0}, False])
def test_no_confirmation_finishes_after_the_sample(minimal_space, write_space, tmp_path, confirm):
    searcher = make(minimal_space, write_space, tmp_path, confirm=confirm, noise_seeds=0)
    for t in ("t0", "t1", "t2", "t3"):
        searcher.suggest(t)
        finish(searcher, t, [0.1, 0.2, 0.3])
    assert searcher.suggest("t4") == Searcher.FINISHED
