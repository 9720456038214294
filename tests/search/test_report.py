"""`python -m search report`: files, ordering, importance, plots, diff and MLflow logging, on hand-made
result folders (summary.json + space.yaml written here) and a real MLflow sqlite store."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

from search.report import write_report
from search.report.inputs import load_search
from search.report.output import ReportDir, safe_name
from search.report.plots import per_epoch_figure
from search.space import set_dotted
from search.summary import pick_best
from training.config import TrainConfig
from training.data import class_names
from training.loop.fit import CHECKPOINT_FILE
from training.loop.runtime import Runtime
from training.schema.errors import ConfigError
from training.tasks import create_task
from training.tracking import Tracker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRIC = "val/macro_f1"
SPACE = {
    "name": "handmade",
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32},
    "base": {"model": {"name": "resnet10t"}},
    "space": {
        "optim.lr": {"loguniform": [1.0e-4, 3.0e-2]},
        "loss.focal_gamma": {"uniform": [0.0, 3.0]},
        "model.name": {"choice": ["resnet10t", "resnet18"]},
    },
    "search": {"metric": METRIC, "mode": "max", "baseline": [{"optim.lr": 0.003, "loss.focal_gamma": 2.0}]},
}
# (trial id, status, searched values, the metric per epoch): t6 fails before reporting any epoch.
TRIALS = [
    ("t1", "DONE", {"optim.lr": 0.002, "loss.focal_gamma": 2.5, "model.name": "resnet10t"}, [0.3, 0.5, 0.8]),
    ("t2", "DONE", {"optim.lr": 0.003, "loss.focal_gamma": 2.0, "model.name": "resnet10t"}, [0.3, 0.4, 0.6]),
    ("t3", "STOPPED", {"optim.lr": 0.0002, "loss.focal_gamma": 0.5, "model.name": "resnet10t"}, [0.1]),
    ("t4", "STOPPED", {"optim.lr": 0.01, "loss.focal_gamma": 1.0, "model.name": "resnet18"}, [0.2, 0.35]),
    ("t5", "DONE", {"optim.lr": 0.0008, "loss.focal_gamma": 1.5, "model.name": "resnet18"}, [0.4, 0.5, 0.7]),
    ("t6", "FAILED", {"optim.lr": 0.025, "loss.focal_gamma": 2.9, "model.name": "resnet18"}, []),
]


def make_trial(trial_id: str, status: str, params: dict[str, Any], scores: list[float]) -> dict[str, Any]:
    history = [
        {"epoch": e, METRIC: s, "val/loss": 1 - s, "val/accuracy": s, "train/loss": 2 - s, "val/f1/good": s, "val/f1/rust": s / 2}
        for e, s in enumerate(scores, start=1)
    ]
    config = TrainConfig().model_dump(mode="json")
    set_dotted(config, "model.name", "resnet10t")
    for key, value in params.items():
        set_dotted(config, key, value)
    return {
        "trial_id": trial_id,
        "status": status,
        "epochs": len(history),
        "metrics": {k: v for k, v in history[-1].items() if k != "epoch"} if history else {},
        "params": params,
        "config": config,
        "mlflow_run_id": None,
        "history": history,
        "stop_reason": None,
        "error": "NonFiniteLossError: loss is nan" if status == "FAILED" else None,
    }


def make_search(folder: Path, tracker: Tracker, space: dict[str, Any] = SPACE, trials=TRIALS) -> Path:
    """A finished search's result folder with its own real MLflow parent run."""
    folder.mkdir(parents=True)
    settings = space["search"]
    records = [make_trial(*t) for t in trials]
    summary = {
        "name": folder.name, "space_file": "handmade.yaml", "out_dir": str(folder), "task": "classification",
        "metric": settings["metric"], "mode": settings["mode"], "space_keys": list(space["space"]), "max_epochs": 3,
        "started_at": "2025-01-02T03:04:05+00:00", "duration_s": 12.0,
        "tracking": {"uri": tracker.uri, "experiment": "handmade", "parent_run_id": tracker.start_run(folder.name)},
        "trials": records,
        "best": pick_best(records, settings["metric"], settings["mode"]),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    return folder


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def diff_keys(path: Path) -> set[str]:
    """The first cell of each body row of the markdown diff table."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return {line.split("|")[1].strip() for line in lines[1:]}


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    store = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{store / 'mlflow.db'}", "handmade", artifact_root=store / "mlartifacts")


@pytest.fixture(scope="module")
def report(tmp_path_factory, tracker) -> dict[str, Any]:
    """The report of the standard hand-made search (mode max), written once for the checks below."""
    folder = make_search(tmp_path_factory.mktemp("report") / "handmade", tracker)
    console = quiet_console()
    out = write_report(folder, console, top=10)
    return {"folder": folder, "out": out, "stdout": console.file.getvalue(), "summary": json.loads((folder / "summary.json").read_text())}


def variant(**search: Any) -> dict[str, Any]:
    space = copy.deepcopy(SPACE)
    space["search"].update(search)
    return space


def test_report_writes_every_file_with_real_pngs(report):
    out = report["out"]
    expected = [
        "leaderboard.csv", "leaderboard.md", "importance.csv", "importance.png", "metric_per_epoch.png",
        "metric_vs_optim.lr.png", "metric_vs_loss.focal_gamma.png", "metric_vs_model.name.png",
        "parallel_coordinates.png", "best_per_class.csv", "best_per_class.png", "best_vs_baseline.md", "README.md",
    ]
    # the report folder sits inside the result folder and holds every promised file
    assert out == report["folder"] / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name in expected:
        # every file has content, and every .png is a real PNG (signature bytes)
        assert (out / name).stat().st_size > 0
        assert not name.endswith(".png") or is_png(out / name), name
    # the index links every other file
    index = (out / "README.md").read_text()
    assert all(f"]({name})" in index for name in expected if name != "README.md")


def test_leaderboard_orders_by_metric_for_mode_max_with_failed_last(report):
    rows = read_rows(report["out"] / "leaderboard.csv")
    # mode max: highest last metric first; the failed trial (no metric) comes last
    assert [r["trial"] for r in rows] == ["t1", "t5", "t2", "t4", "t3", "t6"]
    # each row states its status, epochs, searched values and the other val/ metrics
    assert rows[3]["status"].startswith("stopped early") and rows[3]["epochs"] == "2"
    assert rows[5]["status"].startswith("failed: NonFiniteLossError")
    assert float(rows[0]["optim.lr"]) == 0.002 and float(rows[0]["val/loss"]) == pytest.approx(0.2)
    # per-class metrics stay out of the leaderboard (they are in best_per_class)
    assert "val/f1/good" not in rows[0]
    # the console shows the same leaderboard as a table
    assert "top 6 of 6 trials of 'handmade'" in report["stdout"]


def test_leaderboard_orders_by_metric_for_mode_min_and_honours_top(tmp_path, tracker):
    folder = make_search(tmp_path / "lowest", tracker, space=variant(mode="min"))
    out = write_report(folder, quiet_console(), top=3)
    rows = read_rows(out / "leaderboard.csv")
    # mode min: lowest last metric first, and only the top 3
    assert [r["trial"] for r in rows] == ["t3", "t4", "t2"]


def test_importance_sums_to_one_and_names_only_tuned_keys(report):
    rows = read_rows(report["out"] / "importance.csv")
    # one importance per searched key and nothing else
    assert sorted(r["param"] for r in rows) == sorted(SPACE["space"])
    # importances are normalized: they sum to 1
    assert sum(float(r["importance"]) for r in rows) == pytest.approx(1.0, abs=1e-6)
    # the evaluator is named (fANOVA with scikit-learn installed, PED-ANOVA otherwise)
    assert {r["evaluator"] for r in rows} <= {"fANOVA", "PED-ANOVA"}


def test_importance_with_one_finished_trial_says_it_needs_more(tmp_path, tracker):
    folder = make_search(tmp_path / "few", tracker, trials=[TRIALS[0], TRIALS[5]])
    console = quiet_console()
    out = write_report(folder, console, top=10)
    # no importance files, but a clear line on the console and in the index instead of a failure
    assert not (out / "importance.csv").exists() and not (out / "importance.png").exists()
    assert "importance needs at least 2 finished trials, got 1" in console.file.getvalue()
    assert "importance needs at least 2" in (out / "README.md").read_text()
    # the other parts are still written
    assert is_png(out / "metric_per_epoch.png") and (out / "leaderboard.csv").is_file()


def test_per_epoch_plot_marks_a_failed_trial_without_history(report):
    search = load_search(report["folder"])
    axes = per_epoch_figure(search).axes[0]
    # one line per trial with history (5); the failed trial without history is named in a note instead
    labelled = [line.get_label() for line in axes.lines if not line.get_label().startswith("_")]
    assert sorted(label.split()[0] for label in labelled) == ["t1", "t2", "t3", "t4", "t5"]
    assert any("failed before any epoch: t6" in text.get_text() for text in axes.texts)
    # and the saved plot is a real PNG
    assert is_png(report["out"] / "metric_per_epoch.png")


def test_per_epoch_plot_ends_a_failed_trial_with_history_in_a_red_x(tmp_path, tracker):
    trials = TRIALS[:5] + [("t6", "FAILED", TRIALS[5][2], [0.2, 0.1])]
    axes = per_epoch_figure(load_search(make_search(tmp_path / "late", tracker, trials=trials))).axes[0]
    crosses = [line for line in axes.lines if line.get_marker() == "x"]
    # the failed trial's line is dashed and ends in one red x at its last reported epoch
    assert [(tuple(c.get_xdata()), c.get_color()) for c in crosses] == [((2,), "red")]
    assert next(line for line in axes.lines if line.get_label().startswith("t6")).get_linestyle() == "--"
    # with every failed trial drawn, there is no 'failed before any epoch' note
    assert not axes.texts


def test_report_with_every_trial_failed_still_writes_leaderboard_and_plots(tmp_path, tracker):
    trials = [(tid, "FAILED", params, []) for tid, _, params, _ in TRIALS]
    out = write_report(make_search(tmp_path / "allfailed", tracker, trials=trials), quiet_console(), top=10)
    # the leaderboard lists every failed trial and the plots are still drawn
    assert len(read_rows(out / "leaderboard.csv")) == 6
    assert is_png(out / "metric_per_epoch.png") and is_png(out / "metric_vs_optim.lr.png")
    # the parts that need a successful trial say why they are missing
    index = (out / "README.md").read_text()
    assert "no best-vs-baseline diff" in index and "got 0" in index


def test_best_per_class_holds_the_best_trials_classes(report):
    rows = read_rows(report["out"] / "best_per_class.csv")
    # one row per class of the best trial (t1, last epoch 0.8), one column per per-class metric
    assert rows == [{"class": "good", "f1": "0.8"}, {"class": "rust", "f1": "0.4"}]


def test_best_vs_baseline_lists_exactly_the_differing_keys_of_the_baseline_trial(report):
    path = report["out"] / "best_vs_baseline.md"
    # the baseline is trial t2 (search.baseline[0]); model.name is equal in both, so it is not listed
    assert "trial t2 (search.baseline[0])" in path.read_text()
    assert diff_keys(path) == {"optim.lr", "loss.focal_gamma"}


def test_best_vs_base_config_without_baseline_uses_base_then_defaults(tmp_path, tracker):
    space = variant(baseline=[])
    space["base"] = {"model": {"name": "resnet10t"}, "loss": {"focal_gamma": 2.5}}
    folder = make_search(tmp_path / "nobaseline", tracker, space=space)
    out = write_report(folder, quiet_console(), top=10)
    text = (out / "best_vs_baseline.md").read_text()
    # best t1 equals the base in focal_gamma (2.5) and model.name; only optim.lr differs from the default 0.001
    assert diff_keys(out / "best_vs_baseline.md") == {"optim.lr"}
    assert "| optim.lr | 0.001 | 0.002 |" in text and "base config" in text


def test_report_logs_every_file_to_the_parent_run(report):
    tracking = report["summary"]["tracking"]
    client = MlflowClient(tracking["uri"])
    logged = {a.path for a in client.list_artifacts(tracking["parent_run_id"], "report")}
    # every file of the report folder is an artifact of the parent run under report/
    assert logged == {f"report/{p.name}" for p in report["out"].iterdir()}


def test_safe_name_keeps_names_plain():
    for name in ["../../x", "/etc/passwd", "..", ".hidden", "a b\\c", "metric_vs_../../x.png"]:
        safe = safe_name(name)
        # only [A-Za-z0-9._-]: no separators, never '.', '..' or a hidden file
        assert all(c.isalnum() or c in "._-" for c in safe), safe
        assert safe not in (".", "..") and not safe.startswith("."), safe


def test_report_dir_gives_distinct_paths_inside_the_folder(tmp_path):
    out = ReportDir(tmp_path)
    first, second = out.path("metric_vs_a/b.png", "x"), out.path("metric_vs_a_b.png", "y")
    # two keys that sanitize alike get distinct files, both directly in the report folder
    assert first != second and first.parent == second.parent == tmp_path


def test_report_keeps_a_malicious_param_key_inside_the_report_folder(tmp_path, tracker):
    space = copy.deepcopy(SPACE)
    space["space"]["../../x"] = {"uniform": [0.0, 1.0]}
    trials = [(tid, status, {**params, "../../x": 0.5}, scores) for tid, status, params, scores in TRIALS]
    folder = make_search(tmp_path / "evil", tracker, space=space, trials=trials)
    before = set(tmp_path.rglob("*"))
    out = write_report(folder, quiet_console(), top=10)
    created = set(tmp_path.rglob("*")) - before
    # everything the report wrote lies in the report folder; nothing at ../../x
    assert created and all(path == out or path.parent == out for path in created)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.png").exists()
    # the key's plot is there under a sanitized name
    assert is_png(out / "metric_vs_.._.._x.png")


def test_report_without_summary_is_a_config_error_naming_the_folder(tmp_path):
    # a folder without summary.json is a user error that names the folder
    with pytest.raises(ConfigError, match="no summary.json") as caught:
        write_report(tmp_path, quiet_console(), top=10)
    assert caught.value.file == str(tmp_path)
    # and nothing is written there
    assert list(tmp_path.iterdir()) == []


def test_cli_report_exits_0_on_a_search_and_2_without_summary(tmp_path, tracker):
    folder = make_search(tmp_path / "cli", tracker)
    ok = subprocess.run([sys.executable, "-m", "search", "report", str(folder), "--top", "3"], capture_output=True, text=True, timeout=120)
    # a finished search's report: exit 0, the report folder named on stdout
    assert ok.returncode == 0, ok.stderr
    assert "report written to" in ok.stdout and (folder / "report" / "README.md").is_file()
    bad = subprocess.run([sys.executable, "-m", "search", "report", str(tmp_path)], capture_output=True, text=True, timeout=120)
    # a folder without summary.json: exit 2 and exactly one error line naming it, no traceback
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path}: no summary.json here: not a finished search's result folder"]


def test_importance_with_a_constant_metric_says_so_instead_of_equal_shares(tmp_path, tracker):
    flat = [(tid, status, params, [0.5] * len(scores)) for tid, status, params, scores in TRIALS]
    folder = make_search(tmp_path / "flat", tracker, trials=flat)
    out = write_report(folder, quiet_console(), top=10)
    # a metric that never varied says nothing about the parameters: no importance file, a note instead
    assert not (out / "importance.csv").exists()
    assert "is the same in all 5 finished trials" in (out / "README.md").read_text()


def test_report_splits_a_geometric_ratio_set_into_its_parts(tmp_path, tracker):
    from search.space import geometric_values

    space = copy.deepcopy(SPACE)
    space["space"] = {
        "optim.lr": {"loguniform": [1.0e-4, 3.0e-2]},
        "model.anchor_ratios": {"geometric": {"min": [0.2, 0.5], "max": 2.0, "count": [3, 6]}},
    }
    space["search"]["baseline"] = []
    trials = [
        (f"g{i}", "DONE", {"optim.lr": lr, "model.anchor_ratios": geometric_values(first, 2.0, n)}, [score])
        for i, (lr, first, n, score) in enumerate([(0.001, 0.2, 3, 0.4), (0.003, 0.3, 5, 0.7), (0.01, 0.45, 6, 0.5), (0.002, 0.25, 4, 0.6)])
    ]
    out = write_report(make_search(tmp_path / "ratios", tracker, space=space, trials=trials), quiet_console(), top=10)
    # importance is per sampled parameter: the set's searched min and count, not one opaque list
    rows = read_rows(out / "importance.csv")
    assert sorted(r["param"] for r in rows) == ["model.anchor_ratios.count", "model.anchor_ratios.min", "optim.lr"]
    # and each part gets its own metric plot (the fixed max gets none)
    assert is_png(out / "metric_vs_model.anchor_ratios.min.png") and is_png(out / "metric_vs_model.anchor_ratios.count.png")
    assert not (out / "metric_vs_model.anchor_ratios.max.png").exists()
    assert is_png(out / "parallel_coordinates.png")


def test_leaderboard_with_constraints_shows_feasibility_and_ranks_infeasible_after_feasible(tmp_path):
    from search.report.inputs import Search
    from search.report.leaderboard import leaderboard_rows

    records = [make_trial(*t) for t in TRIALS]
    for record in records:
        record["feasible"] = record["status"] != "FAILED" and record["trial_id"] != "t1"  # t1 violates a constraint
    summary = {"name": "c", "metric": METRIC, "mode": "max", "space_keys": list(SPACE["space"]), "trials": records,
               "constraints": ["val/accuracy <= 0.75"]}
    headers, rows = leaderboard_rows(Search(tmp_path, summary, SPACE, {}), top=10)
    # a constrained search gets a feasible column, and the infeasible t1 ranks after every feasible trial
    column = headers.index("feasible")
    assert [(r[1], r[column]) for r in rows] == [
        ("t5", "yes"), ("t2", "yes"), ("t4", "yes"), ("t3", "yes"), ("t1", "no"), ("t6", "no")
    ]
    # and the search's best is the best feasible trial
    assert pick_best(records, METRIC, "max")["trial_id"] == "t5"


def test_importance_shows_its_range_and_says_when_few_trials_ran_all_epochs(report):
    rows = read_rows(report["out"] / "importance.csv")
    # each importance comes with its 10-90 % range over resampled trials, inside [0, 1]
    for row in rows:
        low, high = float(row["p10"]), float(row["p90"])
        assert 0.0 <= low <= high <= 1.0 + 1e-9, row
    # only 3 of the 5 finished trials ran all 3 epochs: the index and the console say the result is rough
    caveat = "parameter importance is rough: only 3 of its 5 trials ran all 3 epochs"
    assert caveat in (report["out"] / "README.md").read_text()
    assert caveat in " ".join(report["stdout"].split())


def test_report_index_lists_no_file_it_then_calls_missing(report, tmp_path):
    from search.report.inputs import load_search as load
    from search.report.writer import write_index

    index = (report["out"] / "README.md").read_text()
    # this search kept no checkpoint: no task table (confusion matrix) is listed, and the note says why
    assert "confusion.png" not in index
    assert "no task tables (e.g. a confusion matrix): the best trial kept no checkpoint" in index
    # a report that wrote its confusion matrix lists it and never says there is none
    out = ReportDir(tmp_path / "with-confusion")
    out.root.mkdir()
    out.path("confusion.png", "best trial's validation confusion matrix")
    write_index(load(report["folder"]), out)
    written = (out.root / "README.md").read_text()
    assert "[confusion.png](confusion.png)" in written and "no task tables" not in written


CPU = Runtime(device=torch.device("cpu"))


def with_best_checkpoint(folder: Path, config: dict[str, Any]) -> TrainConfig:
    """Give the search's best trial `config` and a checkpoint of a freshly built model of it."""
    summary = json.loads((folder / "summary.json").read_text())
    cfg = TrainConfig.model_validate(config)
    checkpoint = folder / "best-checkpoint"
    checkpoint.mkdir()
    torch.save({"model": create_task(cfg, CPU).model.state_dict()}, checkpoint / CHECKPOINT_FILE)
    summary["best"].update(config=cfg.model_dump(mode="json"), checkpoint=str(checkpoint))
    (folder / "summary.json").write_text(json.dumps(summary))
    return cfg


def test_report_writes_the_tables_the_best_trials_task_makes_from_its_checkpoint(tmp_path, tracker):
    folder = make_search(tmp_path / "with-checkpoint", tracker)
    tiny = {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}}
    cfg = with_best_checkpoint(folder, {"task": "classification", "data": tiny, "model": {"name": "resnet10t"}})
    console = quiet_console()
    out = write_report(folder, console, top=10)
    rows = read_rows(out / "confusion.csv")
    # a classification task's table: its confusion matrix, one row per class, every validation image counted
    assert [row["true \\ predicted"] for row in rows] == class_names(cfg.data)
    counts = [int(v) for row in rows for k, v in row.items() if k != "true \\ predicted"]
    assert len(counts) == len(rows) ** 2 and sum(counts) == len(create_task(cfg, CPU).val_loader.dataset)
    # with its figure, both listed in the index, and a console line naming the trial
    assert is_png(out / "confusion.png")
    index = (out / "README.md").read_text()
    assert "[confusion.csv](confusion.csv)" in index and "no task tables" not in index
    assert "confusion matrix of best trial t1 over" in console.file.getvalue()


def test_report_of_a_task_without_tables_says_so(tmp_path, tracker):
    folder = make_search(tmp_path / "probe", tracker)
    with_best_checkpoint(folder, {"task": "probe", "data": {"batch_size": 16}})
    out = write_report(folder, quiet_console(), top=10)
    # the probe task makes no table: no confusion file, and the index says why
    assert not (out / "confusion.csv").exists()
    assert "no task tables: the best trial's task makes none" in (out / "README.md").read_text()
