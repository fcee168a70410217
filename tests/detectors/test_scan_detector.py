"""SCAn (Tang et al., USENIX Security'21): EM global model, J statistic, class test, subgroup choice.

The brute-force references below follow the authors' MATLAB formulas (global_model.m, local_model.m)
with explicit loops, pseudo-inverses and covariances of per-sample rows.
"""

import math

import numpy as np
import pytest

from exray.detectors import SCAn
from exray.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def planted_result(planted10):
    return SCAn().detect(planted10.features, planted10.labels)


def test_flags_exactly_the_planted_cluster(planted10, planted_result):
    assert planted_result.evaluate(planted10.is_poisoned).f1 == 1.0
    info = planted_result.classes[0]
    assert info["flagged"] is True
    assert info["ln_anomaly_index"] > 2.0  # ln J* > 2 ⇔ J* > e²
    assert info["subgroup_sizes"] == (20, 180)
    assert [k for k, v in planted_result.classes.items() if v["flagged"]] == [0]
    assert all(v["anomaly_index"] <= math.exp(2) for k, v in planted_result.classes.items() if k)
    assert planted_result.summary["em_converged"] is True


def test_anomaly_index_is_the_one_sided_mad_z_score(planted_result):
    j = np.array([planted_result.classes[k]["J"] for k in range(10)])
    expected = np.maximum(j - np.median(j), 0) / (1.4826 * np.median(np.abs(j - np.median(j))))
    np.testing.assert_allclose([planted_result.classes[k]["anomaly_index"] for k in range(10)], expected)


def test_scores_point_at_the_flagged_subgroup(planted10, planted_result):
    class0 = planted_result.scores[:200]
    assert class0[planted10.is_poisoned[:200]].min() > 0
    assert class0[~planted10.is_poisoned[:200]].max() < 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_classes_are_not_flagged(features_factory, seed):
    data = features_factory(seed, poison_fraction=0.0)
    result = SCAn().detect(data.features, data.labels)
    assert result.n_flagged == 0
    assert all(info["anomaly_index"] <= math.exp(2) for info in result.classes.values())


def test_threshold_applies_to_the_anomaly_index(clean10):
    assert SCAn().threshold == pytest.approx(math.exp(2))
    base = SCAn().detect(clean10.features, clean10.labels)
    top_label, top = max(((k, v["anomaly_index"]) for k, v in base.classes.items()), key=lambda kv: kv[1])
    assert top > 1.0
    below = SCAn(threshold=0.99 * top).detect(clean10.features, clean10.labels)
    assert [k for k, v in below.classes.items() if v["flagged"]] == [top_label]
    assert below.n_flagged == min(below.classes[top_label]["subgroup_sizes"])
    assert SCAn(threshold=1.01 * top).detect(clean10.features, clean10.labels).n_flagged == 0


@pytest.mark.parametrize("rule", ["smaller", "reference"])
def test_with_a_clean_reference_set(planted10, clean10, rule):
    reference = slice(0, None, 4)  # 50 clean samples per class, drawn independently of the inspected set
    result = SCAn(poisoned_subgroup=rule).detect(
        planted10.features, planted10.labels, clean10.features[reference], clean10.labels[reference]
    )
    assert result.evaluate(planted10.is_poisoned).f1 == 1.0
    assert result.summary["reference_size"] == 500


def test_reference_rule_picks_the_subgroup_without_reference_samples(features_factory):
    # Half of class 0 is poisoned: "smaller" has no size to go by, the reference set decides.
    data = features_factory(3, poison_fraction=0.5)
    clean = features_factory(3, poison_fraction=0.0)
    result = SCAn(poisoned_subgroup="reference").detect(
        data.features, data.labels, clean.features[::4], clean.labels[::4]
    )
    assert result.classes[0]["flagged"]
    assert result.evaluate(data.is_poisoned).f1 == 1.0


def _authors_em_step(x, y, s_u, s_e):
    """One iteration of the authors' global_model.m, literally: loops, pinv, covariances of rows."""
    f = np.linalg.pinv(s_e)
    labels = np.unique(y)
    u_m = np.zeros((labels.size, x.shape[1]))
    for k, label in enumerate(labels):
        g = -np.linalg.pinv(np.sum(y == label) * s_u + s_e) @ s_u @ f
        for vec in x[y == label]:
            u_m[k] -= s_e @ g @ vec
    u = u_m[np.searchsorted(labels, y)]
    return np.cov(u.T), np.cov((x - u).T)


def test_em_fixed_point_matches_the_authors_update(features_factory):
    data = features_factory(4, n_classes=6, n_per_class=30, dim=5, poison_fraction=0.0)
    x = data.features - data.features.mean(axis=0)
    model = SCAn(em_tol=1e-12, em_max_iter=500).fit_global_model(data.features, data.labels)
    assert model.converged
    s_u, s_e = _authors_em_step(x, data.labels, model.s_u, model.s_e)
    np.testing.assert_allclose(s_u, model.s_u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(s_e, model.s_e, rtol=1e-8, atol=1e-10)


def test_em_recovers_the_generative_covariances():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(3, 3))
    s_u_true = a @ a.T + 2 * np.eye(3)
    s_e_true = np.diag([1.0, 0.5, 2.0])
    n_classes, n_per_class = 400, 20
    identities = rng.multivariate_normal(np.zeros(3), s_u_true, n_classes)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = identities[labels] + rng.multivariate_normal(np.zeros(3), s_e_true, labels.size)
    model = SCAn().fit_global_model(x, labels)
    assert np.linalg.norm(model.s_u - s_u_true) / np.linalg.norm(s_u_true) < 0.15
    # The authors' M-step ignores the posterior covariance of the identities, so S_e comes out as the
    # within-class covariance around (nearly) the class means: (n − 1)/n of the truth.
    expected_s_e = (n_per_class - 1) / n_per_class * s_e_true
    assert np.linalg.norm(model.s_e - expected_s_e) / np.linalg.norm(expected_s_e) < 0.03


def test_j_statistic_matches_the_authors_calc_test(planted10, planted_result):
    # J of class 0 recomputed from its split (the flags) with calc_test's formula and pinv(S_e).
    model = SCAn().fit_global_model(planted10.features, planted10.labels)
    x = planted10.features - planted10.features.mean(axis=0)
    xc = x[planted10.labels == 0]
    sub = planted_result.flags[:200]
    n = xc.shape[0]
    f = np.linalg.pinv(model.s_e)
    g = -np.linalg.pinv(n * model.s_u + model.s_e) @ model.s_u @ f
    mu = -sum(model.s_e @ g @ vec for vec in xc)
    u1, u2 = xc[sub].mean(axis=0), xc[~sub].mean(axis=0)
    total = 0.0
    for vec, in_first in zip(xc, sub):
        u = u1 if in_first else u2
        total += (vec - mu) @ f @ (vec - mu) - (vec - u) @ f @ (vec - u)
    assert planted_result.classes[0]["J"] == pytest.approx(total / n, rel=1e-6)


def test_seeded(planted10, planted_result):
    again = SCAn().detect(planted10.features, planted10.labels)
    np.testing.assert_array_equal(again.scores, planted_result.scores)
    np.testing.assert_array_equal(again.flags, planted_result.flags)


def test_needs_three_classes_and_consistent_reference(planted10):
    two = planted10.labels < 2
    with pytest.raises(InputError, match="at least 3 classes"):
        SCAn().detect(planted10.features[two], planted10.labels[two])
    with pytest.raises(InputError, match="reference"):
        SCAn(poisoned_subgroup="reference").detect(planted10.features, planted10.labels)
    with pytest.raises(InputError, match="both"):
        SCAn().detect(planted10.features, planted10.labels, reference_features=planted10.features)
    with pytest.raises(InputError, match="features"):
        SCAn().detect(planted10.features, planted10.labels, planted10.features[:, :10], planted10.labels)


def test_skips_singleton_classes(planted10):
    features = np.concatenate([planted10.features, planted10.features[:1] + 50])
    labels = np.concatenate([planted10.labels, [99]])
    result = SCAn().detect(features, labels)
    assert "skipped" in result.classes[99]
    assert result.evaluate(np.concatenate([planted10.is_poisoned, [False]])).f1 == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0.0},
        {"poisoned_subgroup": "larger"},
        {"em_max_iter": 0},
        {"em_tol": 0.0},
        {"n_init": 0},
        {"split_max_iter": 0},
        {"seed": -3},
    ],
)
def test_invalid_options_raise_at_construction(options):
    with pytest.raises(ConfigError):
        SCAn(**options)
