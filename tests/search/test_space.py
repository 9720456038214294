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
from training.schema.errors import ConfigError

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


PHASED = {"train": {"epochs": 4}, "phases": [{"epochs": 1}, {"lr_factor": 0.1}]}


@pytest.mark.parametrize(
    "key,value,read",
    [
        ("phases.1.lr_factor", 0.3, lambda c: c.phases[1].lr_factor),
        ("phases.0.epochs", 2, lambda c: c.phases[0].epochs),
        ("phases.0.augment.rotate", 15.0, lambda c: c.phases[0].augment["rotate"]),
    ],
)
def test_dotted_keys_index_list_items(key, value, read):
    from search.space import check_dotted_key, get_dotted

    base = TrainConfig.model_validate(PHASED)
    # a numeric part of a dotted key names a list item: the key is a valid training config key
    check_dotted_key(key, f"space.{key}")
    merged = apply_values(base, {key: value})
    # and the value lands in that item only
    assert read(merged) == value and get_dotted(merged.model_dump(), key) == value
    assert merged.phases[1 - int(key.split(".")[1])] == base.phases[1 - int(key.split(".")[1])]


@pytest.mark.parametrize(
    "key,fragment",
    [("phases.x.lr_factor", "expected an item number"), ("phases.0.lr_facto", "did you mean 'phases.0.lr_factor'")],
)
def test_check_dotted_key_refuses_bad_list_keys(key, fragment):
    from search.space import check_dotted_key

    with pytest.raises(ConfigError) as info:
        check_dotted_key(key, f"space.{key}")
    # a non-numeric item or an unknown field inside an item is named in the error
    assert fragment in info.value.message


def test_apply_values_refuses_a_list_item_that_does_not_exist():
    with pytest.raises(ConfigError) as info:
        apply_values(TrainConfig.model_validate(PHASED), {"phases.2.lr_factor": 0.5})
    # the base config has 2 phases: item 2 is an error naming the key, not an IndexError
    assert info.value.key == "phases.2.lr_factor" and "list of 2" in info.value.message


# --- geometric ratio sets: several Optuna parameters assembled into one list --------------------

GEOMETRIC = {"geometric": {"min": [0.2, 0.5], "max": [1.0, 3.0], "count": [3, 7]}}


@pytest.mark.parametrize(
    "first, last, count, expected",
    [
        (0.2, 2.0, 5, [0.2, 0.356, 0.632, 1.125, 2.0]),
        (0.25, 4.0, 3, [0.25, 1.0, 4.0]),
        (0.5, 2.0, 2, [0.5, 2.0]),
    ],
)
def test_geometric_values_expand_to_a_rounded_geometric_sequence(first, last, count, expected):
    from search.space import geometric_values

    # count values from first to last, a constant ratio between neighbours, rounded to 3 decimals
    assert geometric_values(first, last, count) == expected


def test_geometric_set_is_one_optuna_parameter_per_searched_part():
    from search.space import GeometricSet

    space = parse_space({"model.anchor_ratios": {"geometric": {"min": [0.2, 0.5], "max": 2.0, "count": [3, 7]}}})
    dist = space["model.anchor_ratios"]
    # min and max are log-uniform ranges, count an int range; a fixed number stays a number
    assert dist == GeometricSet(LogUniform(0.2, 0.5), 2.0, IntRange(3, 7))
    # only the searched parts become Optuna parameters, named <key>.<part>
    assert optuna_space(space) == {
        "model.anchor_ratios.min": od.FloatDistribution(0.2, 0.5, log=True),
        "model.anchor_ratios.count": od.IntDistribution(3, 7),
    }
    # and decoding assembles them (with the fixed max) into the list
    params = {"model.anchor_ratios.min": 0.25, "model.anchor_ratios.count": 3}
    assert decode_trial(space, params) == {"model.anchor_ratios": [0.25, 0.707, 2.0]}


def test_geometric_set_round_trips_through_optuna_into_the_config(quiet_optuna):
    space = parse_space({"model.anchor_ratios": GEOMETRIC, "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(12):
        trial = study.ask(optuna_space(space))
        values = decode_trial(space, trial.params)
        ratios = values["model.anchor_ratios"]
        # the sampled min, max and count become a list of count ratios from min to max
        assert len(ratios) == trial.params["model.anchor_ratios.count"]
        assert ratios[0] == round(trial.params["model.anchor_ratios.min"], 3)
        assert ratios[-1] == round(trial.params["model.anchor_ratios.max"], 3)
        # the list lies in the space, and re-encoding it gives back the same list (baselines, resume)
        assert space["model.anchor_ratios"].contains(ratios)
        assert decode_trial(space, encode_point(space, values)) == values
        # and it lands in the training config as the anchor ratios
        assert apply_values(TrainConfig(), values).model.anchor_ratios == ratios
        study.tell(trial, len(ratios))


@pytest.mark.parametrize(
    "value, inside",
    [
        ([0.2, 0.356, 0.632, 1.125, 2.0], True),
        ([0.2, 0.36, 0.63, 1.12, 2.0], True),  # written with 2 decimals: still that set
        ([0.2, 0.35, 0.5, 1.0, 2.0], False),  # the team's set is not geometric
        ([0.1, 0.316, 1.0], False),  # min below its range
        ([0.2, 0.283, 0.4, 0.566, 0.8, 1.131, 1.6, 2.263], False),  # 8 ratios: count above its range
        ([0.5, 1.0, 2.0], True),
        ("0.5,1,2", False),
    ],
)
def test_geometric_set_contains_only_lists_it_can_produce(value, inside):
    dist = parse_distribution("model.anchor_ratios", GEOMETRIC)
    # a baseline list is accepted only when the set can produce it
    assert dist.contains(value) is inside


def _detection(space: dict) -> None:
    # anchor ratios are a detection key: a classification space refuses them
    space["task"] = "detection"
    space["search"] = {"metric": "val/mAP50"}


def test_geometric_set_baseline_and_probes_pass_load_plan(minimal_space, write_space):
    from search.spec import load_plan

    _detection(minimal_space)
    minimal_space["space"] = {"model.anchor_ratios": GEOMETRIC}
    minimal_space["search"]["baseline"] = [{"model.anchor_ratios": [0.25, 1.0, 4.0]}]
    with pytest.raises(ConfigError) as info:
        load_plan(write_space(minimal_space))
    # 4.0 is past max's range: the baseline is refused on its key
    assert info.value.key == "search.baseline.0.model.anchor_ratios"
    minimal_space["search"]["baseline"] = [{"model.anchor_ratios": [0.25, 0.5, 1.0]}]
    plan = load_plan(write_space(minimal_space))
    # a geometric baseline is accepted and enqueued as the set's parameters
    assert encode_point(plan.space, plan.baseline[0]) == {
        "model.anchor_ratios.min": 0.25, "model.anchor_ratios.max": 1.0, "model.anchor_ratios.count": 3,
    }


def test_choice_of_ratio_lists_passes_load_plan(minimal_space, write_space):
    from search.spec import load_plan

    _detection(minimal_space)
    minimal_space["space"] = {"model.anchor_ratios": {"choice": [[0.5, 1, 2], [0.2, 0.35, 0.5, 1, 2]]}}
    minimal_space["search"]["baseline"] = [{"model.anchor_ratios": [0.2, 0.35, 0.5, 1.0, 2.0]}]
    plan = load_plan(write_space(minimal_space))
    # a plain choice over lists works for a list key, baseline included
    assert decode_trial(plan.space, encode_point(plan.space, plan.baseline[0])) == plan.baseline[0]


@pytest.mark.parametrize(
    "raw, key, fragment",
    [
        ({"min": 0.2, "max": 2.0, "count": 5}, "space.k.geometric", "all fixed"),
        ({"min": [0.2, 0.5], "max": [0.4, 2.0], "count": 4}, "space.k.geometric", "must stay below max"),
        ({"min": [0.2, 0.5], "max": 2.0, "count": [1, 4]}, "space.k.geometric.count", "at least 2"),
        ({"min": [0.2, 0.5], "max": 2.0, "count": [3.5, 4]}, "space.k.geometric.count", "two integers"),
        ({"min": [0, 0.5], "max": 2.0, "count": 4}, "space.k.geometric.min", "lo > 0"),
        ({"min": -1, "max": [1, 2.0], "count": 4}, "space.k.geometric.min", "> 0"),
        ({"min": [0.2, 0.5], "max": 2.0}, "space.k.geometric.count", "required"),
        ({"min": [0.2, 0.5], "max": 2.0, "count": 4, "step": 2}, "space.k.geometric.step", "unknown key"),
        ([0.2, 2.0, 4], "space.k.geometric", "expected a mapping"),
    ],
)
def test_geometric_set_errors_name_the_part(raw, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_space({"k": {"geometric": raw}})
    # each mistake is reported on the part's key with what was expected
    assert info.value.key == key and fragment in info.value.message, str(info.value)
