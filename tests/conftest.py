"""Shared fixtures: a tiny valid space file, a writer for space files under tmp_path, and a real
`python -m search run` of a space file; which tests are slow (`-m "not slow"` leaves them out)."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

# Small enough that load_plan's checks (and any trial) stay cheap: 32 px, 40 synthetic images, resnet10t.
MINIMAL_SPACE: dict[str, Any] = {
    "task": "classification",
    "data": {"kind": "synthetic", "image_size": 32, "batch_size": 8, "synthetic": {"count": 40, "seed": 0}},
    "base": {"model": {"name": "resnet10t"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "scheduler": {"name": "asha", "max_epochs": 3},
}


# `python -m pytest -m "not slow"` is the developer's check in minutes (docs/development.md); plain
# `python -m pytest` (the README's, CI's) runs everything. Slow: a test that starts a real search, Ray,
# an MLflow server or a benchmark, or took over ~2 s on 2 cores. Marked here, by what a test uses, so
# a new test of a slow kind is marked without anyone remembering to.
SLOW_FIXTURES = {
    # shared fixtures, wherever used
    "run_search_cli", "run_benchmark", "start_mlflow_server",
    # a module's own fixture: a search, Ray, or an MLflow store built per test
    "tests/benchmarks/test_gpu_packing.py::ray_launcher",
    "tests/search/test_cluster.py::ray_head",
    "tests/search/test_confirmation_search.py::search",
    "tests/search/test_end_to_end.py::search",
    "tests/search/test_mlflow_server.py::search",
    "tests/search/test_mlflow_ui.py::search",
    "tests/search/test_multi_objective.py::search",
    "tests/search/test_report.py::report",
    "tests/search/test_reproduce.py::packed_search",
    "tests/search/test_tracking.py::callback",
    "tests/search/test_tuner.py::local_ray",
}  # fmt: skip
# Slow tests that use none of those: each one's own search, subprocess or training (all its parameters).
SLOW_TESTS = {
    "tests/search/test_budget.py::test_a_search_its_budget_ended_is_written_up_and_goes_on_with_more_time",
    "tests/search/test_check.py::test_check_cli_detection_space_prints_the_box_section",
    "tests/search/test_check.py::test_check_cli_prints_the_time_per_epoch_without_ray",
    "tests/search/test_check.py::test_check_cli_quickstart_space_passes",
    "tests/search/test_cli_errors.py::test_cli_run_unreachable_address_is_a_user_error",
    "tests/search/test_confirmation_search.py::test_a_search_on_k_folds_confirms_and_judges_with_every_fold_model",
    "tests/search/test_confirmation_search.py::test_no_trial_opens_a_test_image_and_the_verdict_does",
    "tests/search/test_report.py::test_best_vs_base_config_without_baseline_uses_base_then_defaults",
    "tests/search/test_report.py::test_cli_report_exits_0_on_a_search_and_2_without_summary",
    "tests/search/test_report.py::test_importance_with_one_finished_trial_says_it_needs_more",
    "tests/search/test_report.py::test_leaderboard_orders_by_metric_for_mode_min_and_honours_top",
    "tests/search/test_report.py::test_report_keeps_a_malicious_param_key_inside_the_report_folder",
    "tests/search/test_report.py::test_report_of_a_task_without_tables_says_so",
    "tests/search/test_report.py::test_report_splits_a_geometric_ratio_set_into_its_parts",
    "tests/search/test_report.py::test_report_writes_the_tables_the_best_trials_task_makes_from_its_checkpoint",
    "tests/search/test_reproduce.py::test_a_trial_resumed_after_sigkill_computes_what_an_uninterrupted_one_does",
    "tests/search/test_reproduce.py::test_fit_in_a_process_an_earlier_run_changed_computes_the_same",
    "tests/search/test_reproduce.py::test_fit_with_data_workers_computes_what_it_does_without",
    "tests/search/test_resume.py::test_a_kill_at_any_point_is_resumable_or_rerunnable",
    "tests/search/test_resume.py::test_resume_after_sigkill_continues_the_same_search",
    "tests/search/test_resume.py::test_sigterm_stops_gracefully_then_resume_finishes",
    "tests/search/test_study.py::test_real_asha_search_leaves_a_truthful_study",
    "tests/training/augment/test_device.py::test_check_cli_gpu_with_a_searched_cpu_only_knob_exits_2",
    "tests/training/data/test_csv_rle.py::test_long_csv_images_flow_through_a_training_step",
    "tests/training/data/test_dataset.py::test_read_image_is_seen_by_an_audit_hook",
    "tests/training/data/test_registry.py::test_a_trial_opens_no_test_image_file",
    "tests/training/detection/test_detection.py::test_fit_one_epoch_reports_every_metric_finite",
    "tests/training/detection/test_semi_detection.py::test_fit_two_epochs_with_burn_in_reports_finite_metrics_and_the_kept_ratio",
    "tests/training/detection/test_semi_detection.py::test_pseudo_losses_leave_out_background_samples_on_ignore_boxes",
    "tests/training/detection/test_semi_detection.py::test_zero_unsupervised_weight_trains_on_the_labeled_part_only",
    "tests/training/inference/test_deploy.py::test_exported_classifier_returns_predict_s_probabilities_and_carries_its_metadata",
    "tests/training/inference/test_deploy.py::test_exported_detector_returns_predict_s_boxes_and_carries_its_metadata",
    "tests/training/inference/test_evaluate.py::test_detection_outputs_are_what_evaluate_reported",
    "tests/training/inference/test_predict.py::test_predict_detection_writes_coco_results_in_each_image_s_own_pixels",
    "tests/training/loop/test_fit.py::test_fit_with_folds_reports_the_mean_of_its_fold_models",
    "tests/training/loop/test_fit.py::test_fit_with_folds_resumes_every_fold_model",
    "tests/training/loop/test_phases.py::test_resume_mid_phase_equals_uninterrupted_run",
    "tests/training/loop/test_runtime.py::test_fit_with_compile_trains_and_matches_eager",
    "tests/training/models/test_init_from.py::test_a_classifier_trained_on_defects_gives_a_better_first_detection_epoch_than_scratch",
    "tests/training/models/test_init_from.py::test_a_timm_safetensors_file_starts_a_nested_backbone",
    "tests/training/test_cli.py::test_cli_train_keeps_mlflow_artifacts_beside_the_store_not_in_the_working_directory",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check_slow_entries_exist()
    for item in items:
        module = item.nodeid.split("::")[0]
        fixtures = getattr(item, "fixturenames", ())
        uses = {*fixtures, *(f"{module}::{name}" for name in fixtures)}
        if uses & SLOW_FIXTURES or f"{module}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def check_slow_entries_exist() -> None:
    """A renamed test or fixture would silently join the fast check: fail at collection instead."""
    root = Path(__file__).resolve().parents[1]
    for entry in sorted(entry for entry in SLOW_TESTS | SLOW_FIXTURES if "::" in entry):
        where, name = entry.split("::")
        if not (root / where).exists() or f"def {name}(" not in (root / where).read_text():
            raise pytest.UsageError(f"tests/conftest.py marks {entry} slow: no such test or fixture")


UNMARKED_SLOW_S = 10.0  # far over the ~2 s the marks were chosen by: slow even on a busy machine
unmarked_slow: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.duration > UNMARKED_SLOW_S and "slow" not in report.keywords:
        unmarked_slow.append(f"{report.duration:.1f}s {report.when} {report.nodeid}")


def pytest_terminal_summary(terminalreporter) -> None:
    if unmarked_slow:  # the fast check stays fast only while new slow tests get marked
        terminalreporter.write_sep("=", f"over {UNMARKED_SLOW_S:.0f} s, not marked slow (tests/conftest.py)")
        for line in unmarked_slow:
            terminalreporter.write_line(line)


@pytest.fixture
def minimal_space() -> dict[str, Any]:
    """A fresh copy of MINIMAL_SPACE, free to edit."""
    return copy.deepcopy(MINIMAL_SPACE)


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[..., Path]:
    """write_space(content, name='space.yaml') -> path; content is a mapping (dumped as YAML) or raw text."""

    def write(content: dict[str, Any] | str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Tiny models train fastest on one thread, and then do not fight other test processes for cores.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_cpu_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_search_cli(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """`python -m search run` of a space (as a subprocess, under tmp_path/results); it must succeed.
    Returns the search's summary.json."""

    def run(space: dict[str, Any], timeout: int = 600) -> dict[str, Any]:
        (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
        command = [sys.executable, "-m", "search", "run", "space.yaml", "--results", "results"]
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads((tmp_path / "results" / space["name"] / "summary.json").read_text())

    return run


@pytest.fixture
def rendered() -> Callable[[list], str]:
    """rendered(parts) -> the plain text rich prints for those renderables (tables, lines), 200 columns."""
    from rich.console import Console

    def render(parts: list) -> str:
        out = io.StringIO()
        console = Console(file=out, width=200, color_system=None)
        for part in parts:
            console.print(part)
        return out.getvalue()

    return render
