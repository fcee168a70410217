"""Activation clustering (Chen et al. 2018) on planted clusters and clean classes."""

import numpy as np
import pytest
import torch

from exray.detectors import ActivationClustering
from exray.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def default_result(planted5):
    return ActivationClustering(analysis="relative-size").detect(planted5.features, planted5.labels)


def test_default_flags_the_smaller_cluster_of_every_class(planted5):
    # ART's default analysis: no threshold, for a class already suspected.
    result = ActivationClustering().detect(planted5.features, planted5.labels)
    assert result.options["reduction"] == "pca"
    assert result.options["analysis"] == "smaller"
    assert all(info["flagged"] for info in result.classes.values())
    for label, info in result.classes.items():
        assert (result.flags[planted5.labels == label]).sum() == min(info["cluster_sizes"])
    assert result.evaluate(planted5.is_poisoned).recall == 1.0


def test_finds_the_planted_cluster(planted5, default_result):
    assert default_result.evaluate(planted5.is_poisoned).f1 == 1.0
    assert default_result.detector == "activation_clustering"
    info = default_result.classes[0]
    assert info["flagged"] is True
    assert info["relative_size"] == pytest.approx(0.1)
    assert sorted(info["cluster_sizes"]) == [20, 180]
    assert [k for k, v in default_result.classes.items() if v["flagged"]] == [0]


def test_scores_are_one_minus_relative_cluster_size(planted5, default_result):
    np.testing.assert_allclose(default_result.scores[planted5.is_poisoned], 0.9)
    np.testing.assert_allclose(default_result.scores[:200][~planted5.is_poisoned[:200]], 0.1)


@pytest.mark.parametrize(
    "options",
    [
        {"reduction": "ica"},
        {"analysis": "silhouette"},
        {"analysis": "silhouette", "reduction": "ica"},
        {"normalize": "standardize"},
        {"normalize": "l2", "reduction": "ica"},
    ],
)
def test_variants_find_the_planted_cluster(planted5, options):
    result = ActivationClustering(**{"analysis": "relative-size", **options}).detect(
        planted5.features, planted5.labels
    )
    assert result.evaluate(planted5.is_poisoned).f1 == 1.0


def test_silhouette_separates_poisoned_from_clean_classes(planted5):
    # ICA whitens, so the planted cluster spans one unit-variance component among ten: a modest
    # silhouette (≈ 0.2); PCA keeps its variance (≈ 0.7). A Gaussian class's split scores ≈ 0.07.
    for reduction, poisoned_min in (("ica", 0.15), ("pca", 0.5)):
        result = ActivationClustering(analysis="silhouette", reduction=reduction).detect(
            planted5.features, planted5.labels
        )
        assert result.classes[0]["silhouette"] > poisoned_min
        for label in range(1, 5):
            assert result.classes[label]["silhouette"] < 0.1


def test_clean_classes_are_not_flagged(clean5):
    result = ActivationClustering(analysis="relative-size").detect(clean5.features, clean5.labels)
    assert result.n_flagged == 0
    assert all(info["relative_size"] > 0.35 for info in result.classes.values())


def test_seeded_and_accepts_tensors(planted5, default_result):
    again = ActivationClustering(analysis="relative-size").detect(
        torch.tensor(planted5.features), torch.tensor(planted5.labels)
    )
    np.testing.assert_array_equal(again.flags, default_result.flags)
    np.testing.assert_array_equal(again.scores, default_result.scores)


def test_tiny_classes_are_skipped_and_labels_need_not_be_contiguous(planted5):
    features = np.concatenate([planted5.features[:200], planted5.features[200:202]])
    labels = np.array([7] * 200 + [42, 42])
    result = ActivationClustering(analysis="relative-size").detect(features, labels)
    assert set(result.classes) == {7, 42}
    assert "skipped" in result.classes[42]
    assert not result.flags[200:].any()
    assert result.evaluate(np.concatenate([planted5.is_poisoned[:200], [False, False]])).f1 == 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"n_components": 0},
        {"reduction": "tsne"},
        {"analysis": "size"},
        {"size_threshold": 0.0},
        {"size_threshold": 0.6},
        {"silhouette_threshold": 2.0},
        {"normalize": "max"},
        {"n_init": 0},
        {"seed": -1},
        {"n_components": 2.5},
    ],
)
def test_invalid_options_raise_at_construction(options):
    with pytest.raises(ConfigError):
        ActivationClustering(**options)


def test_invalid_inputs(planted5):
    with pytest.raises(InputError, match="labels"):
        ActivationClustering().detect(planted5.features, planted5.labels[:-1])
    bad = planted5.features.copy()
    bad[3, 3] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        ActivationClustering().detect(bad, planted5.labels)
    with pytest.raises(InputError, match="integer"):
        ActivationClustering().detect(planted5.features, planted5.labels + 0.5)
