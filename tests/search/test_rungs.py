"""The noise-aware asynchronous Hyperband: Tune's rungs, minus the cuts that rest on noise.

The scheduler only reads a trial's id, config and experiment tag: the trials here are those three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ray.tune.schedulers import TrialScheduler

from search.journal import TrialJournal
from search.roles import BASELINE, NOISE, REPLICA_KEY
from search.rungs import NoiseAwareHyperband, milestones

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
CHANCE = 0.11
METRIC = "val/macro_f1"


@dataclass
class Trial:
    trial_id: str
    index: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def experiment_tag(self) -> str:
        return f"{self.index}_lr=0.001"


def scheduler(tmp_path: Path, **settings) -> NoiseAwareHyperband:
    options = {"metric": METRIC, "mode": "max", "max_t": 8, "grace_period": 1, "reduction_factor": 2, "brackets": 1}
    return NoiseAwareHyperband(**(options | settings), journal=tmp_path / "trials.jsonl")


def report(s: NoiseAwareHyperband, trial: Trial, epoch: int, value: float) -> str:
    # as Tune hands it over: flattened
    return s.on_trial_result(None, trial, {"epoch": epoch, METRIC: value, f"chance/{METRIC}": CHANCE})


def add(s: NoiseAwareHyperband, *trials: Trial) -> None:
    for trial in trials:
        s.on_trial_add(None, trial)


def reference(index: int, seed: int | None, values: list[float], s: NoiseAwareHyperband) -> Trial:
    """A run of the reference config that reported `values` for epochs 1, 2, ..."""
    role = {"role": BASELINE, "group": "ref", "point": 0} if seed is None else {"role": NOISE, "group": "ref", "seed": seed}
    trial = Trial("ref" if seed is None else f"ref{seed}", index, {REPLICA_KEY: {**role, "reference": True}})
    add(s, trial)
    for epoch, value in enumerate(values, start=1):
        # the reference runs its full budget: never stopped
        assert report(s, trial, epoch, value) == CONTINUE
    return trial


def test_milestones_are_tunes_asha_rungs():
    # bracket s starts at grace * rf**s and goes up by rf up to max_t
    assert milestones(1, 8, 2, 0) == [1, 2, 4, 8]
    assert milestones(1, 8, 2, 2) == [4, 8]
    assert milestones(2, 17, 3, 0) == [2, 6]


def test_without_a_reference_rungs_cut_as_plain_asha(tmp_path):
    s = scheduler(tmp_path)
    good, bad = Trial("good", 1), Trial("bad", 2)
    add(s, good, bad)
    assert report(s, good, 1, 0.5) == CONTINUE  # first at the rung: nothing to compare with
    # below the rung's cut (the better half so far) and nothing measured to excuse it: stopped
    assert report(s, bad, 1, 0.3) == STOP
    journal = TrialJournal(tmp_path / "trials.jsonl")
    # the reason is journaled, with the cut and the shortfall
    assert journal.cut_reasons["bad"] == "below the rung-1 cut 0.5 by 0.2"


def test_a_trial_at_the_references_pace_is_kept_at_chance_and_after(tmp_path):
    s = scheduler(tmp_path)
    reference(1, None, [CHANCE, 0.30, 0.4], s)
    reference(2, 1, [CHANCE, 0.34, 0.42], s)  # at epoch 2: mean 0.32, seed noise 0.028
    lucky, slow, behind = Trial("lucky", 3), Trial("slow", 4), Trial("behind", 5)
    add(s, lucky, slow, behind)
    assert report(s, lucky, 1, 0.5) == CONTINUE
    # at epoch 1 the reference still sits at chance: a trial there is as far along as it, kept
    assert report(s, slow, 1, CHANCE) == CONTINUE
    assert s.decisions["at_pace"] == 1
    # the waived decision is journaled with its reason
    assert "as far along as the reference" in TrialJournal(tmp_path / "trials.jsonl").kept_reasons["slow"][-1]
    report(s, lucky, 2, 0.6)
    # at epoch 2 the reference learned (0.32): a trial within one noise sd of its pace stays ...
    assert report(s, slow, 2, 0.30) == CONTINUE
    # ... one far behind it and below the cut does not
    report(s, behind, 1, 0.6)
    assert report(s, behind, 2, 0.10) == STOP


def test_the_strict_rule_waits_until_the_reference_left_chance(tmp_path):
    s = scheduler(tmp_path, wait_for_learning=True, pace=False)
    reference(1, None, [CHANCE, CHANCE, 0.4], s)
    reference(2, 1, [CHANCE, CHANCE + 0.005, 0.42], s)
    lucky, behind = Trial("lucky", 3), Trial("behind", 4)
    add(s, lucky, behind)
    report(s, lucky, 1, 0.3)
    report(s, lucky, 2, 0.35)
    # even a trial below chance is kept while the reference's mean has not left chance
    assert report(s, behind, 1, 0.02) == CONTINUE and report(s, behind, 2, 0.02) == CONTINUE
    assert s.decisions["before_learning"] == 2
    assert "still at chance" in TrialJournal(tmp_path / "trials.jsonl").kept_reasons["behind"][-1]


def test_no_cut_within_the_seed_noise_of_the_cut(tmp_path):
    s = scheduler(tmp_path)
    reference(1, None, [0.40, 0.50], s)
    reference(2, 1, [0.46, 0.56], s)  # seed noise at epoch 1: sd of 0.40, 0.46 = 0.042
    leader, near, far = Trial("leader", 3), Trial("near", 4), Trial("far", 5)
    add(s, leader, near, far)
    assert report(s, leader, 1, 0.45) == CONTINUE
    # 0.03 below the cut, inside one noise sd: kept
    assert report(s, near, 1, 0.42) == CONTINUE
    # far below the cut, beyond the noise: stopped, and the reason names the noise
    assert report(s, far, 1, 0.20) == STOP
    reason = TrialJournal(tmp_path / "trials.jsonl").cut_reasons["far"]
    assert reason.startswith("below the rung-1 cut") and "seed noise 0.042" in reason


def test_no_cut_where_the_noise_is_not_measured_yet(tmp_path):
    s = scheduler(tmp_path)
    reference(1, None, [0.40, 0.50], s)
    reference(2, 1, [0.46], s)  # the second seed has not reached epoch 2
    leader, behind = Trial("leader", 3), Trial("behind", 4)
    add(s, leader, behind)
    # epoch 1 (rung 1): compare; nothing recorded before the leader
    report(s, leader, 1, 0.45)
    report(s, behind, 1, 0.44)  # within noise at rung 1
    report(s, leader, 2, 0.55)
    # rung 2: one reference seed reached epoch 2 only: no noise there yet, so no cut
    assert report(s, behind, 2, 0.10) == CONTINUE
    assert s.decisions["noise_unmeasured"] == 1


def test_replicas_and_the_reference_are_never_stopped(tmp_path):
    s = scheduler(tmp_path)
    leader = Trial("leader", 1)
    add(s, leader)
    report(s, leader, 1, 0.9)
    # a noise seed far below the cut still runs on (reference() checks each epoch's CONTINUE) ...
    noise = reference(2, 1, [0.1, 0.1, 0.1], s)
    # ... and is no rung's record, so it moves no cut
    assert all(noise.trial_id not in recorded for bracket in s.rungs for recorded in bracket.values())


def test_brackets_are_drawn_from_the_search_seed_and_the_trial_index(tmp_path):
    draws = []
    for _ in range(2):
        s = scheduler(tmp_path, brackets=3)
        trials = [Trial(f"t{i}", i) for i in range(1, 40)]
        add(s, *reversed(trials))  # the order trials are added in does not matter
        draws.append([s.bracket_of[t.trial_id] for t in trials])
    # the same seed gives the same brackets, and all three brackets are used
    assert draws[0] == draws[1] and set(draws[0]) == {0, 1, 2}
    other = scheduler(tmp_path, brackets=3, seed=1)
    add(other, *[Trial(f"t{i}", i) for i in range(1, 40)])
    assert [other.bracket_of[f"t{i}"] for i in range(1, 40)] != draws[0]


def test_a_resumed_scheduler_reads_the_reference_curve_back_from_the_journal(tmp_path):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    for trial, group in (("ref", "ref"), ("ref1", "ref")):
        journal.record({"trial": trial, "run": f"run-{trial}", "group": group, "reference": True})
    for trial, values in (("ref", [0.40, 0.50]), ("ref1", [0.46, 0.56])):
        for epoch, value in enumerate(values, start=1):
            journal.record({"trial": trial, "epoch": epoch, "metrics": {METRIC: value}})
    s = scheduler(tmp_path)  # as a resumed search builds it: nothing in memory
    leader, far = Trial("leader", 3), Trial("far", 4)
    add(s, leader, far)
    report(s, leader, 1, 0.45)
    # the noise measured before the interruption still decides: far below the cut, beyond it
    assert report(s, far, 1, 0.20) == STOP
    assert s.reference == "ref"


def test_a_resumed_scheduler_cuts_against_the_rungs_recorded_before_the_interruption(tmp_path):
    # Tune rebuilds the scheduler from its constructor on resume: the rungs come back from the journal
    before = scheduler(tmp_path)
    leaders = [Trial(f"lead{i}", i) for i in range(1, 4)]
    add(before, *leaders)
    for trial, value in zip(leaders, (0.50, 0.55, 0.60)):
        assert report(before, trial, 1, value) == CONTINUE
    assert TrialJournal(tmp_path / "trials.jsonl").rungs == {0: {1: {"lead1": 0.50, "lead2": 0.55, "lead3": 0.60}}}
    resumed, fresh = scheduler(tmp_path), scheduler(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    late = Trial("late", 4)
    add(resumed, late)
    add(fresh, late)
    # against the recorded rung a trial far below the cut stops; an empty rung has nothing to cut with
    assert report(resumed, late, 1, 0.20) == STOP
    assert "below the rung-1 cut 0.55 by 0.35" in TrialJournal(tmp_path / "trials.jsonl").cut_reasons["late"]
    assert report(fresh, late, 1, 0.20) == CONTINUE
