"""Config files: safe YAML in, typed config out, every error one `file: key: expected` line.

Also the CLI edge that prints those errors: `python -m training train` exits 2 with one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.cli import EXIT_USER, main
from training.config import TrainConfig
from training.schema.config_file import load_config, read_yaml
from training.schema.errors import ConfigError


def _write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# read_yaml ------------------------------------------------------------------------------------


def test_read_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    # a missing file is a user error naming the file
    assert err.value.file == str(path) and "file not found" in err.value.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: 2\n  c: 3\n", 3),  # a mapping value where none may start
        ("a: [1, 2\nb: 3\n", 2),  # an unclosed flow list
        ("a:\n\tb: 1\n", 2),  # a tab used as indentation
    ],
    ids=["mapping-value", "unclosed-list", "tab-indent"],
)
def test_read_yaml_invalid_yaml_names_line(tmp_path, text, line):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    # a YAML syntax error is reported as invalid YAML with its 1-based line number
    assert err.value.message.startswith(f"invalid YAML (line {line}): ")
    # attributed to the file it is in
    assert err.value.file == str(path)


@pytest.mark.parametrize(
    ("text", "kind"), [("- 1\n- 2\n", "list"), ("just text\n", "str"), ("42\n", "int")], ids=["list", "str", "int"]
)
def test_read_yaml_non_mapping_top_level(tmp_path, text, kind):
    with pytest.raises(ConfigError) as err:
        read_yaml(_write(tmp_path, text))
    # the top level must be a mapping of keys; the error says what was found instead
    assert err.value.message == f"expected a mapping of keys at the top, got {kind}"


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object:collections.OrderedDict {}",
        "!!python/object/apply:os.mkdir [MADE]",
        "!!python/name:os.system",
    ],
    ids=["object", "object-apply", "name"],
)
def test_read_yaml_refuses_python_tags(tmp_path, tag):
    made = tmp_path / "made"
    path = _write(tmp_path, "value: " + tag.replace("MADE", str(made)) + "\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    # python tags are never constructed (safe_load): the file is refused with our own one-line message,
    # naming the key and the tag, never PyYAML's ("could not determine a constructor ...")
    assert err.value.key == "value" and err.value.message.startswith(f"YAML tag {tag.split()[0]} is not allowed (line 1)")
    assert "constructor" not in str(err.value) and "\n" not in str(err.value)
    # and nothing the tag names was run
    assert not made.exists()


def test_read_yaml_empty_file_is_empty_mapping(tmp_path):
    # an empty file holds no keys: every default applies
    assert read_yaml(_write(tmp_path, "")) == {}


# load_config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("optim: {lrr: 1}\n", "optim.lrr", "did you mean 'lr'?"),
        ("optimm: {lr: 1}\n", "optimm", "did you mean 'optim'?"),
        ("data: {imagefolder: {rooot: x}}\n", "data.imagefolder.rooot", "did you mean 'root'?"),
        ("zzzz: 1\n", "zzzz", "expected one of: augment, data, eval, loss, model, optim, phases, seed, semi, task, tracking, train"),
    ],
    ids=["nested", "top-level", "deeply-nested", "no-close-match"],
)
def test_load_config_unknown_key_suggests_closest(tmp_path, text, key, hint):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # an unknown key is named by its dotted path
    assert err.value.key == key
    # with the closest valid name at that level, or the valid names when none is close
    assert err.value.message == f"unknown key; {hint}"
    # and the one-line message reads `file: key: expected`
    assert str(err.value) == f"{path}: {key}: unknown key; {hint}"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("optim:\n  lr: -1\n", "optim.lr", "input should be greater than 0 (got -1)"),
        ("optim: {name: adam}\n", "optim.name", "input should be 'adamw' or 'sgd' (got 'adam')"),
        ("loss: {focal_alpha: 2}\n", "loss.focal_alpha", "expected a number in (0, 1), 'auto' or none, got 2"),
        ("optim: 5\n", "optim", "input should be a valid dictionary or instance of OptimConfig (got 5)"),
    ],
    ids=["below-bound", "not-a-choice", "above-bound", "section-not-mapping"],
)
def test_load_config_value_error_names_dotted_key(tmp_path, text, key, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # a bad value is reported under its dotted key, with what was expected and what was given
    assert (err.value.key, err.value.message) == (key, message)
    # attributed to the file it came from
    assert str(err.value) == f"{path}: {key}: {message}"


def test_load_config_yaml_error_keeps_its_file(tmp_path):
    path = _write(tmp_path, "- a\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # a file-level error has no key: just `file: message`
    assert err.value.key is None and str(err.value) == f"{path}: expected a mapping of keys at the top, got list"


def test_load_config_valid_file_round_trips(tmp_path):
    cfg = TrainConfig.model_validate(
        {
            "seed": 3,
            "data": {
                "kind": "imagefolder",
                "image_size": 48,
                "imagefolder": {"root": str(tmp_path), "split": "folders"},
            },
            "model": {"name": "resnet10t", "drop_rate": 0.2},
            "optim": {"name": "sgd", "lr": 0.05, "schedule": "cosine", "warmup_epochs": 0.5},
            "loss": {"name": "focal", "focal_gamma": 1.5, "focal_alpha": 0.3},
            "augment": {"p": 0.7, "hflip": 0.5, "rotate": 15},
            "train": {"epochs": 4, "grad_clip": 1.0},
            "tracking": {"uri": "sqlite:///x.db"},
        }
    )
    path = _write(tmp_path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    loaded = load_config(path)
    # a config dumped to YAML loads back equal, field for field
    assert loaded == cfg
    # and dumps to the same document again
    assert loaded.model_dump(mode="json") == cfg.model_dump(mode="json")


def test_load_config_partial_file_fills_defaults(tmp_path):
    loaded = load_config(_write(tmp_path, "optim:\n  lr: 0.01\n"))
    # keys left out take their defaults; the ones given override them
    assert loaded == TrainConfig(optim={"lr": 0.01})


# the CLI edge ---------------------------------------------------------------------------------


def test_cli_train_bad_config_exits_2_with_one_error_line(tmp_path):
    _write(tmp_path, "optim:\n  lrr: 1\n", "bad.yaml")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run(
        [sys.executable, "-m", "training", "train", "bad.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    # a user error exits with code 2
    assert proc.returncode == 2, proc.stderr
    # reported as exactly one stderr line, `error: file: key: expected`
    assert lines == ["error: bad.yaml: optim.lrr: unknown key; did you mean 'lr'?"]
    # with no traceback
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("files", "argv", "expected"),
    [
        ({}, ["train", "missing.yaml"], "error: missing.yaml: file not found"),
        (
            {"c.yaml": "optim: {lr: -1}\n"},
            ["train", "c.yaml"],
            "error: c.yaml: optim.lr: input should be greater than 0 (got -1)",
        ),
        (
            {"c.yaml": "seed: 1\n"},
            ["train", "c.yaml", "--epochs", "0"],
            "error: --epochs: expected a positive number of epochs, got 0",
        ),
        (
            {"c.yaml": "task: detect\n"},
            ["train", "c.yaml"],
            "error: c.yaml: task: unknown task 'detect'; did you mean 'detection'?",
        ),
    ],
    ids=["missing-file", "bad-value", "bad-epochs-flag", "unknown-task"],
)
def test_cli_main_user_errors_return_2_with_one_line(tmp_path, monkeypatch, capsys, files, argv, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    for name, text in files.items():
        _write(tmp_path, text, name)
    code = main(argv)
    captured = capsys.readouterr()
    # a user error returns exit code 2
    assert code == EXIT_USER == 2
    # and prints one `error: ...` line to stderr
    assert captured.err.splitlines() == [expected]
    # and nothing to stdout
    assert captured.out == ""
    # before any training started: nothing was written to results/
    assert not (tmp_path / "results").exists()


# regression: the CLI once printed errors through rich, which wraps at 80 columns off a terminal
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "zzzz: 1\n",
            "error: bad.yaml: zzzz: unknown key; "
            "expected one of: augment, data, eval, loss, model, optim, phases, seed, semi, task, tracking, train",
        ),
        (
            "model: {name: resnet10tt}\n",
            "error: bad.yaml: model.name: unknown timm model 'resnet10tt'; did you mean 'resnet10t'?",
        ),
    ],
    ids=["no-close-key", "unknown-model"],
)
def test_cli_main_long_error_stays_one_line(tmp_path, monkeypatch, capsys, text, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    _write(tmp_path, text, "bad.yaml")
    code = main(["train", "bad.yaml"])
    err = capsys.readouterr().err
    # a user error exits with code 2
    assert code == 2
    # and is one stderr line however long the message (scripts and log greps rely on it)
    assert err.splitlines() == [expected]


def test_load_config_empty_section_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("optim:\naugment:\n")
    # a section written with nothing under it keeps every default instead of failing
    assert load_config(path).optim == TrainConfig().optim
