"""Search-space distributions: Optuna conversion, JSON transport of list choices, dotted-key merging,
and a real seeded Optuna study over the converted space."""

from __future__ import annotations

from typing import Any

import optuna
import optuna.distributions as od
import pytest

from search.space import (
    Choice,
    IntRange,
    LogUniform,
    Uniform,
    apply_values,
    decode_trial,
    encode_point,
    optuna_space,
    parse_distribution,
    parse_space,
)
from training.config import TrainConfig
from training.errors import ConfigError

ANCHOR_RATIOS = [[0.5, 1.0, 2.0], [0.2, 0.5, 1.0, 2.0]]


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------- parsing and Optuna conversion


@pytest.mark.parametrize(
    ("raw", "parsed", "optuna_dist"),
    [
        pytest.param({"uniform": [0.0, 0.5]}, Uniform(0.0, 0.5), od.FloatDistribution(0.0, 0.5), id="uniform"),
        pytest.param(
            {"loguniform": [1.0e-4, 1.0e-2]},
            LogUniform(1.0e-4, 1.0e-2),
            od.FloatDistribution(1.0e-4, 1.0e-2, log=True),
            id="loguniform",
        ),
        pytest.param({"int": [1, 5]}, IntRange(1, 5), od.IntDistribution(1, 5), id="int"),
        pytest.param({"int": [16, 64], "step": 16}, IntRange(16, 64, 16), od.IntDistribution(16, 64, step=16), id="int-step"),
        pytest.param(
            {"choice": ["adamw", "sgd"]}, Choice(("adamw", "sgd")), od.CategoricalDistribution(["adamw", "sgd"]), id="choice"
        ),
        pytest.param(
            {"choice": [None, 0.25, True]},
            Choice((None, 0.25, True)),
            od.CategoricalDistribution([None, 0.25, True]),
            id="choice-scalars",
        ),
        pytest.param(
            {"choice": ANCHOR_RATIOS},
            Choice(tuple(ANCHOR_RATIOS)),
            od.CategoricalDistribution(["[0.5, 1.0, 2.0]", "[0.2, 0.5, 1.0, 2.0]"]),
            id="choice-lists-as-json",
        ),
    ],
)
def test_distribution_converts_to_optuna(raw, parsed, optuna_dist):
    dist = parse_distribution("some.key", raw)
    # the space-file entry parses to the matching distribution
    assert dist == parsed
    # which converts to the equivalent Optuna distribution (log flag, step, choices included)
    assert dist.to_optuna() == optuna_dist


def test_optuna_space_converts_every_key():
    space = parse_space({"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "optim.name": {"choice": ["adamw", "sgd"]}})
    # one Optuna distribution per searched key, same keys, same order
    assert optuna_space(space) == {
        "optim.lr": od.FloatDistribution(1.0e-4, 1.0e-2, log=True),
        "optim.name": od.CategoricalDistribution(["adamw", "sgd"]),
    }


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        pytest.param({"uniform": [0.0, 1.0], "loguniform": [1, 2]}, "space.k", "exactly one of", id="two-kinds"),
        pytest.param([0.0, 1.0], "space.k", "exactly one of", id="not-a-mapping"),
        pytest.param({"uniform": [0.0, 1.0], "stpe": 1}, "space.k.stpe", "did you mean 'step'?", id="unknown-extra-key"),
        pytest.param({"uniform": [0.0, 1.0], "step": 0.1}, "space.k.step", "int ranges only", id="step-on-uniform"),
        pytest.param({"int": [0, 10], "step": 0}, "space.k.step", "positive integer", id="int-step-0"),
        pytest.param({"uniform": [0.0, float("inf")]}, "space.k.uniform", "two finite numbers", id="infinite-bound"),
        pytest.param({"uniform": [False, True]}, "space.k.uniform", "two finite numbers", id="bool-bounds"),
        pytest.param({"uniform": [0.0]}, "space.k.uniform", "two finite numbers", id="one-bound"),
        pytest.param({"choice": "adamw"}, "space.k.choice", "non-empty list", id="choice-not-a-list"),
    ],
)
def test_parse_distribution_refuses_malformed_entry(raw, key, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_distribution("k", raw)
    # the error names the space entry (or its offending sub-key)
    assert caught.value.key == key
    # and says what was expected
    assert fragment in caught.value.message


# ---------------------------------------------------------------- choice lists through the sampler


@pytest.mark.parametrize("value", ANCHOR_RATIOS, ids=["3-ratios", "4-ratios"])
def test_choice_of_lists_round_trips_through_encode_and_decode(value):
    space = {"anchors.ratios": Choice(tuple(ANCHOR_RATIOS))}
    encoded = encode_point(space, {"anchors.ratios": value})["anchors.ratios"]
    categorical = space["anchors.ratios"].to_optuna()
    # lists travel to Optuna as scalars (JSON strings), since its categoricals hold scalars only
    assert isinstance(encoded, str)
    # Optuna's categorical accepts the encoded value as one of its choices
    assert categorical._contains(categorical.to_internal_repr(encoded))
    # decoding what the sampler returns gives back the original list
    assert decode_trial(space, {"anchors.ratios": encoded}) == {"anchors.ratios": value}


@pytest.mark.parametrize("value", ["adamw", 0.25, None, True])
def test_choice_of_scalars_passes_through_unencoded(value):
    space = {"k": Choice(("adamw", 0.25, None, True))}
    # scalar choices go to Optuna as they are
    assert encode_point(space, {"k": value}) == {"k": value}
    # and come back as they are
    assert decode_trial(space, {"k": value}) == {"k": value}


def test_decode_trial_ignores_keys_not_in_space():
    space = {"optim.lr": LogUniform(1.0e-4, 1.0e-2), "anchors.ratios": Choice(tuple(ANCHOR_RATIOS))}
    params = {"optim.lr": 1.0e-3, "anchors.ratios": "[0.5, 1.0, 2.0]", "trial_id": "abc", "optim.name": "sgd"}
    # only searched keys come back, decoded; extra sampler/tune keys are dropped
    assert decode_trial(space, params) == {"optim.lr": 1.0e-3, "anchors.ratios": [0.5, 1.0, 2.0]}


def test_decode_trial_skips_searched_keys_the_sampler_left_out():
    space = {"optim.lr": LogUniform(1.0e-4, 1.0e-2), "optim.name": Choice(("adamw", "sgd"))}
    # a searched key missing from the params is absent from the result, not an error
    assert decode_trial(space, {"optim.name": "sgd"}) == {"optim.name": "sgd"}


# ---------------------------------------------------------------- contains (baseline checks)


@pytest.mark.parametrize(
    ("dist", "value", "inside"),
    [
        pytest.param(Uniform(0.0, 0.5), 0.0, True, id="uniform-lo"),
        pytest.param(Uniform(0.0, 0.5), 0.5, True, id="uniform-hi"),
        pytest.param(Uniform(0.0, 0.5), 0.6, False, id="uniform-above"),
        pytest.param(Uniform(0.0, 0.5), "0.1", False, id="uniform-string"),
        pytest.param(LogUniform(1.0e-4, 1.0e-2), 1.0e-5, False, id="loguniform-below"),
        pytest.param(IntRange(16, 64, 16), 48, True, id="int-on-step"),
        pytest.param(IntRange(16, 64, 16), 40, False, id="int-off-step"),
        pytest.param(IntRange(1, 5), 2.5, False, id="int-fraction"),
        pytest.param(Choice(tuple(ANCHOR_RATIOS)), [0.5, 1.0, 2.0], True, id="choice-list"),
        pytest.param(Choice(tuple(ANCHOR_RATIOS)), [1.0], False, id="choice-other-list"),
    ],
)
def test_distribution_contains(dist, value, inside):
    # a value is inside when the sampler could produce it: in [lo, hi], on the step, or one of the choices
    assert dist.contains(value) is inside


# ---------------------------------------------------------------- merging into the training config


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"optim.lr": 0.01}, id="one-key"),
        pytest.param({"augment.hflip": 0.5, "loss.focal_gamma": 1.0, "optim.name": "sgd"}, id="several-sections"),
        pytest.param({"data.synthetic.difficulty": 0.9, "data.synthetic.classes": ["good", "bad"]}, id="two-levels-deep"),
        pytest.param({"loss.focal_alpha": None}, id="null-value"),
    ],
)
def test_apply_values_sets_dotted_keys_and_keeps_the_rest(values):
    base = TrainConfig.model_validate({"model": {"name": "resnet10t"}, "optim": {"lr": 3.0e-3}, "loss": {"focal_alpha": 0.5}})
    before = base.model_dump()
    result = apply_values(base, values)
    after = flat(result.model_dump())
    # each dotted key holds its new value
    assert {key: after[key] for key in values} == values
    # every other key keeps its base value
    assert {k: v for k, v in after.items() if k not in values} == {k: v for k, v in flat(before).items() if k not in values}
    # the base config itself is left unchanged
    assert base.model_dump() == before


def test_apply_values_refuses_a_value_the_config_rejects():
    with pytest.raises(ConfigError) as caught:
        apply_values(TrainConfig(), {"augment.hue": 0.9})
    # the merged config is validated: the error names the dotted key
    assert caught.value.key == "augment.hue"


# ---------------------------------------------------------------- a real seeded Optuna study

STUDY_SPACE = {
    "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "loss.focal_gamma": {"uniform": [0.0, 4.0]},
    "data.batch_size": {"int": [8, 64], "step": 8},
    "optim.name": {"choice": ["adamw", "sgd"]},
    "anchors.ratios": {"choice": ANCHOR_RATIOS},
}


def sample(seed: int, trials: int = 20) -> list[dict[str, Any]]:
    """Decoded values of `trials` ask/tell rounds of a seeded TPE study over STUDY_SPACE (no Ray)."""
    space = parse_space(STUDY_SPACE)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    points = []
    for _ in range(trials):
        trial = study.ask(optuna_space(space))
        values = decode_trial(space, trial.params)
        # a deterministic objective, so TPE (past its random start-up trials) has something to model
        study.tell(trial, abs(values["optim.lr"] - 1.0e-3) + values["loss.focal_gamma"] / values["data.batch_size"])
        points.append(values)
    return points


@pytest.fixture(scope="module")
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def test_optuna_study_samples_inside_the_space(quiet_optuna):
    space = parse_space(STUDY_SPACE)
    points = sample(seed=7)
    # every trial gets a value for every searched key
    assert all(set(point) == set(space) for point in points)
    # each decoded value lies inside its distribution (bounds, step, choices)
    assert all(space[key].contains(value) for point in points for key, value in point.items())
    # the float ranges hold their bounds
    assert all(1.0e-4 <= p["optim.lr"] <= 1.0e-2 and 0.0 <= p["loss.focal_gamma"] <= 4.0 for p in points)
    # list choices come back as lists, one of those offered
    assert all(p["anchors.ratios"] in ANCHOR_RATIOS for p in points)


def test_optuna_study_is_reproducible_with_the_same_seed(quiet_optuna):
    # two studies with the same sampler seed propose the same 20 trials
    assert sample(seed=3) == sample(seed=3)
    # and the seed matters: another seed proposes others
    assert sample(seed=3) != sample(seed=4)


def test_optuna_study_values_merge_into_a_valid_config(quiet_optuna):
    searched = {k: v for k, v in STUDY_SPACE.items() if k != "anchors.ratios"}  # not a training config key
    space = parse_space(searched)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask(optuna_space(space))
    config = flat(apply_values(TrainConfig(), decode_trial(space, trial.params)).model_dump())
    # a sampled point becomes a valid training config holding the sampled values
    assert {key: config[key] for key in trial.params} == trial.params




def test_choice_baseline_equal_list_encodes_to_an_offered_choice():
    space = {"anchors.ratios": Choice(tuple(ANCHOR_RATIOS))}
    point = {"anchors.ratios": [0.5, 1, 2]}  # YAML `[0.5, 1, 2]`: ints where the choice has floats
    categorical = space["anchors.ratios"].to_optuna()
    # the baseline check accepts the point ...
    assert space["anchors.ratios"].contains(point["anchors.ratios"])
    # ... so its encoded value must be one the sampler offers (else Optuna raises once the search runs)
    assert encode_point(space, point)["anchors.ratios"] in categorical.choices


@pytest.mark.parametrize(
    "dist", [pytest.param(IntRange(0, 5), id="int"), pytest.param(Uniform(0.0, 1.0), id="uniform")]
)
def test_range_contains_refuses_bools(dist):
    # `true` in a baseline is not a number in a range (bounds refuse bools too)
    assert not dist.contains(True)
