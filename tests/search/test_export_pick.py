"""`export --pick RULE`: the rule's grammar, the trial it chooses on a hand-made search, its errors,
and the exported file (header, calibrated decision threshold) that `python -m training train` accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from search.cli import main
from search.constraints import Constraint
from search.export import export_best
from search.pick import PickRule, parse_rule, pick_trial
from training.config import TrainConfig
from training.schema.config_file import load_config
from training.schema.errors import ConfigError

OBJECTIVES = [{"metric": "val/miss_rate", "mode": "min"}, {"metric": "val/overkill_rate", "mode": "min"}]


def make_trial(trial_id: str, miss: float, overkill: float, status: str = "DONE", feasible: bool = True, **more: float):
    config = TrainConfig.model_validate({"optim": {"lr": 0.001 * (1 + ord(trial_id[-1]) % 7)}}).model_dump(mode="json")
    return {
        "trial_id": trial_id,
        "status": status,
        "feasible": feasible,
        "epochs": 2,
        "metrics": {"val/miss_rate": miss, "val/overkill_rate": overkill, "val/macro_f1": 1 - miss - overkill, **more},
        "params": {"optim.lr": config["optim"]["lr"]},
        "config": config,
        "mlflow_run_id": f"run-{trial_id}",
    }


# front: a (0.00, 0.40), b (0.01, 0.20), c (0.03, 0.05); d is dominated by b; e failed; f infeasible
TRIALS = [
    make_trial("t_a", 0.00, 0.40),
    make_trial("t_b", 0.01, 0.20, **{"val/threshold_at_target_miss": 0.37, "val/overkill_at_target_miss": 0.2}),
    make_trial("t_c", 0.03, 0.05),
    make_trial("t_d", 0.02, 0.30),
    make_trial("t_e", 0.00, 0.00, status="FAILED"),
    make_trial("t_f", 0.001, 0.01, feasible=False),
]


def make_summary(objectives: list[dict[str, str]] | None = OBJECTIVES, trials=TRIALS, best: str | None = "t_a") -> dict[str, Any]:
    return {
        "name": "hand-made",
        "space_file": "spaces/hand-made.yaml",
        "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "hand-made", "parent_run_id": "parent"},
        "metric": "val/miss_rate",
        "mode": "min",
        "objectives": objectives or [],
        "constraints": ["val/overkill_rate < 0.5"],
        "space_keys": ["optim.lr"],
        "trials": trials,
        "best": next((t for t in trials if t["trial_id"] == best), None),
    }


def result_dir(tmp_path: Path, summary: dict[str, Any]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    return tmp_path


# ---------------------------------------------------------------- rule grammar


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("min val/overkill_rate", PickRule("min", "val/overkill_rate")),
        ("max val/macro_f1", PickRule("max", "val/macro_f1")),
        (
            "min val/overkill_rate where val/miss_rate <= 0.02",
            PickRule("min", "val/overkill_rate", (Constraint("val/miss_rate", "<=", 0.02),)),
        ),
        (
            "  max val/macro_f1 where val/miss_rate<0.05 and val/overkill_rate >= 1e-3 ",
            PickRule("max", "val/macro_f1", (Constraint("val/miss_rate", "<", 0.05), Constraint("val/overkill_rate", ">=", 0.001))),
        ),
    ],
)
def test_parse_rule_reads_goal_and_where_clauses(text, rule):
    # the goal (mode, metric) and each `and`-joined constraint come out as written
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lowest val/overkill_rate",
        "min",
        "min val/overkill_rate val/miss_rate",
        "min val/overkill_rate where",
        "min val/overkill_rate where val/miss_rate = 0.02",
        "min val/overkill_rate where val/miss_rate <= 0.02 or val/accuracy > 0.9",
        "min val/overkill_rate where val/miss_rate <= abs(-1)",
    ],
)
def test_parse_rule_bad_rule_is_a_config_error_naming_pick(text):
    # a malformed rule is refused with the --pick key and the expected form, never evaluated
    with pytest.raises(ConfigError) as caught:
        parse_rule(text)
    assert caught.value.key == "--pick"
    assert "expected" in caught.value.message


# ---------------------------------------------------------------- choosing


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("min val/overkill_rate where val/miss_rate <= 0.02", "t_b"),  # t_c misses too much; t_f infeasible
        ("min val/overkill_rate", "t_c"),
        ("min val/miss_rate", "t_a"),
        ("max val/macro_f1 where val/miss_rate < 0.01", "t_a"),
        ("min val/overkill_rate where val/miss_rate >= 0.005 and val/miss_rate <= 0.025", "t_b"),  # t_d is off the front
    ],
)
def test_pick_trial_chooses_the_expected_front_trial(rule, expected):
    trial, origin = pick_trial(make_summary(), parse_rule(rule))
    # the rule's best among the front trials meeting its constraints
    assert trial["trial_id"] == expected
    # with objectives, the choice is made on the Pareto front (3 trials: a, b, c)
    assert origin == "the Pareto front (3 trials)"


def test_pick_trial_without_objectives_chooses_among_finished_feasible_trials():
    trial, origin = pick_trial(make_summary(objectives=None), parse_rule("max val/overkill_rate"))
    # no front: every finished feasible trial competes, so dominated t_d can win; failed/infeasible cannot
    assert trial["trial_id"] == "t_a" and origin == "the finished feasible trials (4 trials)"
    trial, _ = pick_trial(make_summary(objectives=None), parse_rule("max val/overkill_rate where val/miss_rate > 0.01"))
    assert trial["trial_id"] == "t_d"


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("min val/overkill_rate where val/miss_rate < 0.0", "no trial of the Pareto front (3 trials) satisfies"),
        ("min val/overkil_rate", "no trial reports 'val/overkil_rate'"),
    ],
)
def test_pick_trial_nothing_to_choose_is_a_config_error(rule, fragment):
    # an unsatisfiable rule or an unknown metric is a user error naming --pick
    with pytest.raises(ConfigError) as caught:
        pick_trial(make_summary(), parse_rule(rule))
    assert caught.value.key == "--pick" and fragment in caught.value.message


# ---------------------------------------------------------------- the exported file


def test_export_pick_writes_the_chosen_config_with_rule_and_threshold(tmp_path):
    folder = result_dir(tmp_path / "search", make_summary())
    out = export_best(folder, tmp_path / "picked.yaml", "min val/overkill_rate where val/miss_rate <= 0.02")
    text = out.read_text()
    # the header names the rule and the trial it picked
    assert "# picked by: --pick 'min val/overkill_rate where val/miss_rate <= 0.02' among the Pareto front" in text
    assert "# trial t_b, MLflow run run-t_b" in text
    config = load_config(out)
    # the file is a valid training config: the chosen trial's values plus its calibrated threshold
    assert config.optim.lr == TRIALS[1]["config"]["optim"]["lr"]
    assert config.eval.decision_threshold == pytest.approx(0.37)
    # and the header says what the threshold means in deployment (the task's note)
    assert "# eval.decision_threshold = 0.37: in deployment call an image defective when 1 - P(good) >= it" in text


def test_export_sets_only_what_the_trials_task_derives_from_its_metrics(tmp_path):
    trial = make_trial("t_x", 0.01, 0.2, **{"val/threshold_at_target_miss": 0.37})
    trial["config"]["task"] = "detection"
    folder = result_dir(tmp_path / "search", make_summary(objectives=None, trials=[trial], best="t_x"))
    text = export_best(folder, tmp_path / "best.yaml").read_text()
    # the threshold rule is the classification task's: a detection trial's export sets no threshold
    assert load_config(tmp_path / "best.yaml").eval.decision_threshold is None
    assert "eval.decision_threshold =" not in text


def test_export_default_is_the_search_best_without_a_threshold_when_none_was_calibrated(tmp_path):
    folder = result_dir(tmp_path / "search", make_summary(best="t_a"))
    text = export_best(folder, tmp_path / "best.yaml").read_text()
    # without --pick: the search's best trial, and the header says by which rule
    assert "# picked by: min val/miss_rate where val/overkill_rate < 0.5 (the search's best trial)" in text
    assert "# trial t_a," in text
    # no calibration metric reported: the threshold stays none (argmax)
    assert load_config(tmp_path / "best.yaml").eval.decision_threshold is None


def test_cli_export_bad_or_unsatisfiable_pick_exits_2_with_one_line(tmp_path, capsys):
    folder = result_dir(tmp_path / "search", make_summary())
    for rule, fragment in [
        ("minimize val/overkill_rate", "error: --pick: expected 'min|max METRIC"),
        ("min val/overkill_rate where val/miss_rate < 0", "error: --pick: no trial of the Pareto front"),
    ]:
        code = main(["export", str(folder), "-o", str(tmp_path / "x.yaml"), "--pick", rule])
        err = capsys.readouterr().err
        # exit 2 and one line naming --pick; nothing written
        assert code == 2 and err.startswith(fragment) and err.count("\n") == 1
        assert not (tmp_path / "x.yaml").exists()


def test_cli_export_refuses_to_overwrite_without_force(tmp_path, capsys):
    folder = result_dir(tmp_path / "search", make_summary(best="t_a"))
    existing = tmp_path / "best.yaml"
    existing.write_text("# my own notes\n")
    code = main(["export", str(folder), "-o", str(existing)])
    err = capsys.readouterr().err
    # an existing file is never overwritten silently: exit 2, one line naming the file and --force
    assert code == 2 and err.count("\n") == 1 and str(existing) in err and "--force" in err, err
    assert existing.read_text() == "# my own notes\n"
    # with --force the export replaces it with the best trial's config
    assert main(["export", str(folder), "-o", str(existing), "--force"]) == 0
    assert "# trial t_a," in existing.read_text()
