"""The trial journal: durable events, shared by several writers, replayed after a restart."""

from __future__ import annotations

from search.journal import TrialJournal


def test_journal_refresh_sees_another_writers_events(tmp_path):
    path = tmp_path / "trials.jsonl"
    callback, stopper = TrialJournal(path), TrialJournal(path)
    callback.record({"trial": "t1", "run": "r1"})
    stopper.record({"trial": "t1", "stop": "plateau"})
    # each writer reads what the other appended, without re-reading from the start
    assert callback.refresh().stop_reasons == {"t1": "plateau"}
    assert stopper.run_ids == {"t1": "r1"}


def test_journal_replay_keeps_the_newest_report_of_an_epoch(tmp_path):
    path = tmp_path / "trials.jsonl"
    journal = TrialJournal(path)
    for epoch, loss in [(1, 1.0), (2, 0.8), (2, 0.7), (3, 0.6)]:
        journal.record({"trial": "t1", "epoch": epoch, "metrics": {"train/loss": loss}})
    replayed = TrialJournal(path)
    # a resumed trial re-reporting epoch 2 replaces it; a fresh reader replays the same history
    assert [h["train/loss"] for h in replayed.history["t1"]] == [1.0, 0.7, 0.6]
    assert replayed.epochs("t1") == 3


def test_journal_waits_for_a_line_still_being_written(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text('{"trial": "t1", "run": "r1"}\n{"trial": "t2", "ru')
    journal = TrialJournal(path)
    # a half-written last line is not parsed (no crash) until it is complete
    assert journal.run_ids == {"t1": "r1"}
    with path.open("a") as handle:
        handle.write('n": "r2"}\n')
    assert journal.refresh().run_ids == {"t1": "r1", "t2": "r2"}
