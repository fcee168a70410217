"""Parity of activation clustering and spectral signatures with IBM ART 1.20.1 (a test dependency), run on
the same features.

ART's detectors are driven on raw features as its own code allows: ``ActivationDefence`` with the
activations preset per class (it then reads only ``nb_classes`` from the classifier), and
``SpectralSignatureDefense`` with a classifier whose ``get_activations`` returns its input. ART's k-means
and FastICA draw from numpy's global generator (seeded here); exray seeds its own, so the data are built
so that 2-means has one clear optimum in every class — two well-separated blobs — and both must then find
the same partition, whatever the initialisation.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from art.defences.detector.poison.activation_defence import ActivationDefence
from art.defences.detector.poison.spectral_signature_defense import SpectralSignatureDefense
from art.utils import segment_by_class

from exray.detectors import ActivationClustering, SpectralSignatures

#: exray's analysis name -> ART's ``cluster_analysis``.
ART_ANALYSIS = {"smaller": "smaller", "relative-size": "relative-size", "distance": "distance"}


def blobs(
    dim: int, seed: int = 0, small: tuple[int, ...] = (20, 80, 80, 80, 80)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five classes of 200, each two tight blobs, the smaller holding ``small[label]`` samples: class 0's
    small blob sits near class 1's centre (a poisoned look-alike), the others near their own class.
    Returns (features, labels, is_poisoned)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, (5, dim))
    rows, labels, poisoned = [], [], []
    for label in range(5):
        n_small = small[label]
        offset = (centres[1] - centres[0]) * 0.8 if label == 0 else rng.normal(0.0, 1.0, dim) * 3.0
        rows += [centres[label] + rng.normal(0.0, 0.3, (200 - n_small, dim))]
        rows += [centres[label] + offset + rng.normal(0.0, 0.3, (n_small, dim))]
        labels += [label] * 200
        poisoned += [False] * (200 - n_small) + [label == 0] * n_small
    return np.concatenate(rows), np.array(labels), np.array(poisoned)


#: Small-blob sizes at which every class is flagged by relative-size: ART 1.20.1's
#: ``analyze_by_relative_size`` raises under numpy 2 as soon as one class is not (``cluster_id in
#: poison_clusters`` on an empty array), so its parity can only be checked where all classes are flagged.
#: 69 / 200 = 0.345 rounds to 0.34, below 0.35.
ALL_SMALL = (20, 40, 60, 68, 69)


def art_activation_clustering(features, labels, **params) -> np.ndarray:
    """ART's ActivationDefence flags (True = poisoned) on raw features."""
    defence = ActivationDefence(SimpleNamespace(nb_classes=5), x_train=features, y_train=labels)
    defence.activations_by_class = segment_by_class(features, labels, 5)
    np.random.seed(0)  # noqa: NPY002 - ART draws from numpy's global generator
    _, is_clean = defence.detect_poison(**params)
    return np.array(is_clean) == 0


@pytest.mark.parametrize("analysis", ["smaller", "distance"])
def test_activation_clustering_matches_art_without_reduction(analysis):
    # 8 dimensions <= nb_dims 10: neither reduces (ART skips it), so every analysis — distance included —
    # sees the same coordinates.
    x, y, poisoned = blobs(8)
    ours = ActivationClustering(analysis=analysis).detect(x, y)
    art = art_activation_clustering(x, y, nb_dims=10, reduce="PCA", cluster_analysis=ART_ANALYSIS[analysis])
    np.testing.assert_array_equal(ours.flags, art)
    if analysis == "smaller":  # ART's default flags the smaller cluster of every class
        assert ours.n_flagged == 20 + 4 * 80
    else:
        assert ours.evaluate(poisoned).f1 == 1.0


@pytest.mark.parametrize("dim", [8, 64])
@pytest.mark.parametrize("analysis", ["smaller", "relative-size"])
def test_activation_clustering_matches_art_with_pca(dim, analysis):
    # PCA keeps the blob direction's variance, so the 2-means optimum stays clear-cut after the reduction.
    # (FastICA whitens it to unit variance like nine Gaussian components; ART's single k-means run then
    # misses the split on such data — 392 of 1,000 samples differed — so the ICA partition is not compared.)
    x, y, _ = blobs(dim, seed=1, small=ALL_SMALL)
    ours = ActivationClustering(analysis=analysis).detect(x, y)
    art = art_activation_clustering(x, y, nb_dims=10, reduce="PCA", cluster_analysis=analysis)
    np.testing.assert_array_equal(ours.flags, art)
    assert ours.n_flagged == sum(ALL_SMALL)
    assert all(info["n_components"] == (10 if dim > 10 else None) for info in ours.classes.values())


def test_relative_size_rounds_the_share_like_art():
    # ART: np.round(share, 2) < 0.35. 69/200 = 0.345 -> 0.34 is flagged, 70/200 = 0.35 is not.
    x, y, _ = blobs(8, small=(69, 70, 80, 80, 80))
    result = ActivationClustering(analysis="relative-size").detect(x, y)
    assert [k for k, v in result.classes.items() if v["flagged"]] == [0]
    assert result.n_flagged == 69


def test_activation_clustering_defaults_are_arts():
    art = ActivationDefence(SimpleNamespace(nb_classes=5), x_train=np.zeros((1, 1)), y_train=np.zeros(1))
    ours = ActivationClustering()
    assert (ours.n_components, ours.reduction, ours.analysis) == (art.nb_dims, art.reduce.lower(), "smaller")
    assert art.cluster_analysis == "smaller"
    assert art.nb_clusters == 2


def art_spectral_signatures(features, labels, poison_rate: float) -> tuple[np.ndarray, dict[int, float]]:
    classifier = SimpleNamespace(
        nb_classes=int(labels.max()) + 1,
        layer_names=["features"],
        get_activations=lambda x, layer, batch_size: x,
    )
    defence = SpectralSignatureDefense(classifier, features, labels, expected_pp_poison=poison_rate)
    report, is_clean = defence.detect_poison()
    return np.array(is_clean) == 0, report


@pytest.mark.parametrize("poison_rate", [0.05, 0.1, 0.33])
def test_spectral_signatures_match_art(planted10, poison_rate):
    # ART's score |<r, v>| on uncentred rows and its quantile budget without a cap.
    ours = SpectralSignatures(
        poison_rate=poison_rate, score="art", budget="quantile", max_removed_fraction=1.0
    ).detect(planted10.features, planted10.labels)
    flags, report = art_spectral_signatures(planted10.features, planted10.labels, poison_rate)
    np.testing.assert_array_equal(ours.flags, flags)
    np.testing.assert_allclose([ours.scores[i] for i in sorted(report)], [report[i] for i in sorted(report)])
    assert ours.classes[0]["n_removed"] == SpectralSignatures(
        poison_rate=poison_rate, budget="quantile", max_removed_fraction=1.0
    ).removal_budget(200)


def test_spectral_signatures_paper_score_is_arts_on_centred_classes(planted10):
    # Centring each class before ART turns its |<r, v>| into sqrt(<r - mu, v>^2): the same ranking.
    centred = planted10.features.copy()
    for label in range(10):
        rows = planted10.labels == label
        centred[rows] -= centred[rows].mean(axis=0)
    ours = SpectralSignatures(budget="quantile", max_removed_fraction=1.0).detect(
        planted10.features, planted10.labels
    )
    flags, report = art_spectral_signatures(centred, planted10.labels, 0.1)
    np.testing.assert_array_equal(ours.flags, flags)
    np.testing.assert_allclose(
        [ours.scores[i] for i in sorted(report)], [report[i] ** 2 for i in sorted(report)]
    )


def test_art_score_misses_poison_on_the_low_side():
    # Non-negative features with the poison shifted *down* along the top direction: the paper's centred
    # score finds it, ART's uncentred |<r, v>| ranks the class by its distance from 0 and does not.
    rng = np.random.default_rng(3)
    direction = np.zeros(16)
    direction[0] = 1.0
    x = 10.0 + rng.normal(0.0, 0.5, (300, 16))
    x[:30] -= 6.0 * direction
    y = np.zeros(300, dtype=int)
    truth = np.arange(300) < 30
    paper = SpectralSignatures(poison_rate=1 / 15).detect(x, y)
    art = SpectralSignatures(poison_rate=1 / 15, score="art").detect(x, y)
    assert paper.evaluate(truth).f1 == 1.0
    assert art.evaluate(truth).recall == 0.0
