"""The inner random forest: split by model, seeded; each half scored by the forest of the other half."""

import numpy as np
import pytest

from exray.errors import ConfigError, InputError
from exray.refinement import RF_FEATURES, RandomForestMethod, cross_fit, split_models

MODELS = [f"id-{i:08d}" for i in range(10)]
POISONED = [i % 2 == 0 for i in range(10)]


def test_split_is_by_model_stratified_and_seeded():
    first, second = split_models(MODELS, POISONED, seed=3)
    assert sorted(first + second) == MODELS and not set(first) & set(second)
    assert len(first) == len(second) == 5
    poisoned = dict(zip(MODELS, POISONED))
    assert abs(sum(poisoned[m] for m in first) - sum(poisoned[m] for m in second)) <= 1
    # the same seed gives the same halves whatever the order of the models; another seed another split
    shuffled = list(reversed(MODELS))
    assert split_models(shuffled, list(reversed(POISONED)), seed=3) == (first, second)
    assert any(split_models(MODELS, POISONED, seed=s) != (first, second) for s in range(4, 10))


def _population(seed=0):
    rng = np.random.default_rng(seed)
    features, injected = {}, {}
    for model, poisoned in zip(MODELS, POISONED):
        labels = [poisoned, False]  # a trojaned model: its injected trigger plus a natural one
        features[model] = [list(rng.normal(3.0 if y else 0.0, 0.3, len(RF_FEATURES))) for y in labels]
        injected[model] = labels
    return features, injected


def test_cross_fit_scores_each_half_with_the_other_halfs_forest():
    features, injected = _population()
    halves = split_models(MODELS, POISONED, seed=0)
    scored = cross_fit(features, injected, halves, trees=20, seed=0)
    for model in MODELS:
        values = [s.value for s in scored[model]]
        assert [v >= 0.5 for v in values] == injected[model]
    # a model's scores do not depend on its own labels, nor on its half's: flip them
    flipped = {m: ([not y for y in v] if m in halves[0] else v) for m, v in injected.items()}
    again = cross_fit(features, flipped, halves, trees=20, seed=0)
    for model in halves[0]:
        assert [s.value for s in again[model]] == [s.value for s in scored[model]]


def test_cross_fit_without_training_triggers_leaves_scores_empty():
    features = {"a": [[0.0] * len(RF_FEATURES)], "b": []}
    scored = cross_fit(features, {"a": [True], "b": []}, (["a"], ["b"]), trees=5)
    assert scored["a"][0].value is None and "no triggers" in scored["a"][0].note
    assert scored["b"] == []


def test_forest_trained_on_one_class_and_bad_calls():
    rf = RandomForestMethod(trees=5).fit([[0.0] * len(RF_FEATURES)] * 3, [False] * 3)
    assert rf.probabilities([[1.0] * len(RF_FEATURES)]) == [0.0]
    with pytest.raises(ConfigError, match="not fitted"):
        RandomForestMethod().probabilities([[0.0] * len(RF_FEATURES)])
    with pytest.raises(InputError, match="features per label"):
        RandomForestMethod().fit([[0.0, 1.0]], [True])
    with pytest.raises(ConfigError, match="trees"):
        RandomForestMethod(trees=0)
    with pytest.raises(InputError, match="unique"):
        split_models(["a", "a"], [True, False])
