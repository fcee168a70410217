"""SCAn (Tang et al., USENIX Security'21): EM global model, J statistic, class test, subgroup choice.

The brute-force references below follow the authors' MATLAB formulas (global_model.m, local_model.m)
with explicit loops, pseudo-inverses and covariances of per-sample rows.
"""

import math

import numpy as np
import pytest

from exray.detectors import SCAn
from exray.errors import ConfigError, InputError

from .conftest import make_heterogeneous

#: Without a clean reference only the posterior identity works: the authors' mu leaves each class's identity
#: norm in J, which then differs between classes more than a poisoned subgroup adds (module docstring).
NO_REFERENCE = SCAn(identity="posterior")


@pytest.fixture(scope="module")
def planted_result(planted10):
    return NO_REFERENCE.detect(planted10.features, planted10.labels)


def test_flags_exactly_the_planted_cluster(planted10, planted_result):
    assert planted_result.evaluate(planted10.is_poisoned).f1 == 1.0
    info = planted_result.classes[0]
    assert info["flagged"] is True
    assert info["ln_anomaly_index"] > 2.0  # ln J* > 2 ⇔ J* > e²
    assert info["subgroup_sizes"] == (20, 180)
    assert [k for k, v in planted_result.classes.items() if v["flagged"]] == [0]
    assert all(v["anomaly_index"] <= math.exp(2) for k, v in planted_result.classes.items() if k)
    assert planted_result.summary["em_converged"] is True


def test_anomaly_index_is_the_two_sided_mad_z_score_by_default(planted_result):
    # calc_anomaly_index.m: |a - median| / (1.4826 * MAD)
    j = np.array([planted_result.classes[k]["J"] for k in range(10)])
    expected = np.abs(j - np.median(j)) / (1.4826 * np.median(np.abs(j - np.median(j))))
    np.testing.assert_allclose([planted_result.classes[k]["anomaly_index"] for k in range(10)], expected)


def test_upper_anomaly_index_keeps_only_j_above_the_median(planted10):
    result = SCAn(identity="posterior", anomaly="upper").detect(planted10.features, planted10.labels)
    j = np.array([result.classes[k]["J"] for k in range(10)])
    expected = np.maximum(j - np.median(j), 0) / (1.4826 * np.median(np.abs(j - np.median(j))))
    np.testing.assert_allclose([result.classes[k]["anomaly_index"] for k in range(10)], expected)


def test_scores_point_at_the_flagged_subgroup(planted10, planted_result):
    class0 = planted_result.scores[:200]
    assert class0[planted10.is_poisoned[:200]].min() > 0
    assert class0[~planted10.is_poisoned[:200]].max() < 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_classes_are_not_flagged(features_factory, seed):
    data = features_factory(seed, poison_fraction=0.0)
    result = NO_REFERENCE.detect(data.features, data.labels)
    assert result.n_flagged == 0
    assert all(info["anomaly_index"] <= math.exp(2) for info in result.classes.values())


def test_threshold_applies_to_the_anomaly_index(clean10):
    assert SCAn().threshold == pytest.approx(math.exp(2))
    base = NO_REFERENCE.detect(clean10.features, clean10.labels)
    top_label, top = max(((k, v["anomaly_index"]) for k, v in base.classes.items()), key=lambda kv: kv[1])
    assert top > 1.0
    below = SCAn(identity="posterior", threshold=0.99 * top).detect(clean10.features, clean10.labels)
    assert [k for k, v in below.classes.items() if v["flagged"]] == [top_label]
    assert below.n_flagged == min(below.classes[top_label]["subgroup_sizes"])
    above = SCAn(identity="posterior", threshold=1.01 * top)
    assert above.detect(clean10.features, clean10.labels).n_flagged == 0


@pytest.mark.parametrize("rule", ["smaller", "reference", "auto"])
def test_with_a_clean_reference_set(planted10, clean10, rule):
    reference = slice(0, None, 4)  # 50 clean samples per class, drawn independently of the inspected set
    result = SCAn(poisoned_subgroup=rule, reference_per_dim=1.0).detect(
        planted10.features, planted10.labels, clean10.features[reference], clean10.labels[reference]
    )
    assert result.evaluate(planted10.is_poisoned).f1 == 1.0
    assert result.summary["reference_size"] == 500
    assert result.summary["global_model"] == "reference"
    assert result.summary["poisoned_subgroup"] == ("smaller" if rule == "smaller" else "reference")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("identity", ["authors", "posterior"])
def test_finds_a_5_sigma_subgroup_among_classes_of_different_covariance_with_a_reference(seed, identity):
    # Issue 17: 10 classes in 128-D whose covariances differ, 30 % of class 0 shifted by 5 sigma; the
    # global model fitted on 200 clean samples per class (2,000 >= 10 x 128: no reduction).
    inspected, reference = make_heterogeneous(seed)
    result = SCAn(identity=identity).detect(
        inspected.features, inspected.labels, reference.features, reference.labels
    )
    assert result.evaluate(inspected.is_poisoned).f1 >= 0.95
    assert [k for k, v in result.classes.items() if v["flagged"]] == [0]
    assert result.summary["pca_components"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_a_reference_the_authors_statistic_misses_it(seed):
    # The documented failure (docs/results.md): without a reference the authors' mu leaves every class's
    # identity norm in J, and class 0's J* stays far below e^2; the posterior form still finds it here.
    inspected, _ = make_heterogeneous(seed)
    result = SCAn().detect(inspected.features, inspected.labels)
    assert result.summary["global_model"] == "inspected"
    assert "no clean reference" in result.summary["notes"][0]
    assert result.classes[0]["anomaly_index"] < 2.0
    assert result.evaluate(inspected.is_poisoned).f1 == 0.0
    posterior = SCAn(identity="posterior").detect(inspected.features, inspected.labels)
    assert posterior.evaluate(inspected.is_poisoned).f1 >= 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_reference_reduces_the_features_and_says_so(seed):
    # 100 clean samples per class: 1,000 < 10 x 128, so both sets go to 100 principal components (fitted
    # on inspected + reference, so the direction only the poisoned samples span is kept).
    inspected, reference = make_heterogeneous(seed, n_reference=100)
    result = SCAn().detect(inspected.features, inspected.labels, reference.features, reference.labels)
    assert result.summary["pca_components"] == 100
    assert result.summary["feature_dim"] == 128
    assert "100 principal components" in result.summary["notes"][0]
    assert result.evaluate(inspected.is_poisoned).f1 >= 0.95


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


def _calc_test(xc, sub, s_u, s_e, identity):
    """J of one class from its split, literally as local_model.m's calc_test (loops, pinv)."""
    n = xc.shape[0]
    f = np.linalg.pinv(s_e)
    g = -np.linalg.pinv(n * s_u + s_e)
    if identity == "posterior":
        g = g @ s_u @ f  # the global model's E-step, S_u (n S_u + S_e)^+ Σr
    mu = -sum(s_e @ g @ vec for vec in xc)
    u1, u2 = xc[sub].mean(axis=0), xc[~sub].mean(axis=0)
    total = 0.0
    for vec, in_first in zip(xc, sub):
        u = u1 if in_first else u2
        total += (vec - mu) @ f @ (vec - mu) - (vec - u) @ f @ (vec - u)
    return total / n


@pytest.mark.parametrize("identity", ["authors", "posterior"])
def test_j_statistic_matches_the_authors_calc_test(planted10, planted_result, identity):
    # J of class 0 recomputed from its split (the posterior run's flags; the split does not depend on the
    # identity): the authors' mu = S_e (n S_u + S_e)^+ Σr, the posterior S_u (n S_u + S_e)^+ Σr.
    result = SCAn(identity=identity).detect(planted10.features, planted10.labels)
    model = SCAn().fit_global_model(planted10.features, planted10.labels)
    x = planted10.features - planted10.features.mean(axis=0)
    split = planted_result.flags[:200]
    expected = _calc_test(x[planted10.labels == 0], split, model.s_u, model.s_e, identity)
    assert result.classes[0]["J"] == pytest.approx(expected, rel=1e-6)


def test_j_with_a_reference_uses_the_union_as_the_local_set(planted10, clean10):
    # The ports: local model on concat[inspection, clean], centred by its mean, global model on clean.
    ref = slice(0, None, 4)
    rx, ry = clean10.features[ref], clean10.labels[ref]
    result = SCAn(reference_per_dim=1.0).detect(planted10.features, planted10.labels, rx, ry)
    model = SCAn().fit_global_model(rx, ry)
    union = np.concatenate([planted10.features, rx])
    union_labels = np.concatenate([planted10.labels, ry])
    centred = union - union.mean(axis=0)
    members = centred[union_labels == 0]
    flagged = np.concatenate([result.flags[:200], np.zeros(50, dtype=bool)])
    assert result.classes[0]["subgroup_sizes"] == (20, 180)
    expected = _calc_test(members, flagged, model.s_u, model.s_e, "authors")
    assert result.classes[0]["J"] == pytest.approx(expected, rel=1e-6)


def test_seeded(planted10, planted_result):
    again = NO_REFERENCE.detect(planted10.features, planted10.labels)
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
    result = NO_REFERENCE.detect(features, labels)
    assert "skipped" in result.classes[99]
    assert result.evaluate(np.concatenate([planted10.is_poisoned, [False]])).f1 == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0.0},
        {"poisoned_subgroup": "larger"},
        {"identity": "prior"},
        {"anomaly": "lower"},
        {"reference_per_dim": -1.0},
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
