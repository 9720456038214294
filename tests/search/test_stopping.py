"""Plateau and divergence stopping rules, and the Tune Stopper that applies them."""

from __future__ import annotations

import pytest

from search.journal import TrialJournal
from search.spec import StopSettings
from search.stopping import LossRules, plateau_reason, variance_reason


@pytest.mark.parametrize(
    "losses, patience, stops",
    [([1.0, 0.9, 0.8], 2, False), ([1.0, 0.8, 0.85, 0.9], 2, True), ([1.0, 0.8, 0.85], 2, False), ([1.0], 1, False)],
)
def test_plateau_reason_counts_epochs_since_the_best(losses, patience, stops):
    # a trial stops once `patience` epochs passed without a new best loss
    assert (plateau_reason(losses, patience) is not None) == stops


def test_plateau_reason_off_by_default():
    # no patience set: never stops
    assert plateau_reason([1.0, 2.0, 3.0, 4.0], None) is None


def test_variance_reason_detects_oscillation():
    calm = [1.0, 0.98, 0.97]
    wild = [0.5, 1.5, 0.4]
    # variance of the last window far above the previous window's: diverging
    assert variance_reason(calm + wild, window=3, max_increase=0.5) is not None
    # steady descent: no stop
    assert variance_reason([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], window=3, max_increase=0.5) is None
    # too few epochs for two windows: no verdict
    assert variance_reason(calm + wild[:2], window=3, max_increase=0.5) is None


def test_loss_rules_stop_and_record_the_reason(tmp_path):
    journal = tmp_path / "trials.jsonl"
    rules = LossRules(StopSettings(patience_epochs=1), journal)
    decisions = [rules("t1", {"epoch": e, "train/loss": loss}) for e, loss in enumerate([1.0, 0.5, 0.6], start=1)]
    # the third epoch did not improve on the second: stop there, and only there
    assert decisions == [False, False, True]
    # the reason lands in the journal, where the MLflow callback and the summary read it
    assert "not improved" in TrialJournal(journal).stop_reasons["t1"]


def test_loss_rules_continue_from_the_journal_after_a_resume(tmp_path):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    for epoch, loss in [(1, 1.0), (2, 0.5)]:
        journal.record({"trial": "t1", "epoch": epoch, "metrics": {"train/loss": loss}})
    rules = LossRules(StopSettings(patience_epochs=1), tmp_path / "trials.jsonl")
    # a fresh stopper (as after resume) knows epochs 1-2 from the journal: epoch 3 without improvement stops
    assert rules("t1", {"epoch": 3, "train/loss": 0.7}) is True
