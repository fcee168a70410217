"""Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
Clustering", SafeAI 2019, §4), spec §6.4, at parity with IBM ART's ``ActivationDefence``
(``art/defences/detector/poison/activation_defence.py`` and ``clustering_analyzer.py``, ART 1.20.1).

Per assigned class: reduce the penultimate-layer representations to ``n_components`` (10) dimensions —
PCA (ART's ``ActivationDefence`` default) or FastICA (the paper; ART's module helpers) — only when the
features have more dimensions than that (ART), split them with 2-means, and decide with one of ART's
cluster analyses which cluster is poisoned:

* ``analysis="smaller"`` (ART's default): the smaller cluster of **every** class, no threshold — meant for
  a class already suspected (one target class), not for a sweep over clean classes;
* ``"relative-size"``: the smaller cluster when its share of the class, rounded to 2 decimals, is below
  ``size_threshold`` (0.35);
* ``"silhouette"``: as relative-size, and the 2-means silhouette score, rounded to 4 decimals, above
  ``silhouette_threshold`` (0.1). ART 1.20.1's ``analyze_by_silhouette_score`` under numpy 2 flags the
  whole class (the large cluster keeps uninitialised values) or raises; exray flags the small cluster, as
  ART intends;
* ``"distance"``: cluster j of class i is poisoned when some other class k is nearer to cluster j's median
  than class i is while class i stays the nearer to the other cluster's median (medians of the class and
  of the clusters). ART measures these medians in each class's own reduced basis, so its distances compare
  different coordinate systems whenever it reduces; exray measures them in the (normalised) feature space,
  where both agree when no reduction happens.

FastICA uses ART's settings (max_iter 1000, tol 0.005, unit-variance whitening); its output is a rotation
of the whitened top principal components, so the split does not depend on whether ICA converged and its
convergence warnings are silenced. Differences from ART, all deliberate: seeded reductions and
``n_init`` (100) seeded k-means restarts (ART: one unseeded run), the full-SVD PCA solver, classes of
fewer than 3 samples skipped (ART raises), and the component count capped at the class size (ART's PCA
raises below it). The parity tests (tests/detectors/test_art_parity.py) run ART on the same features.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from exray.detectors._common import as_features, as_labels
from exray.detectors.result import DetectionResult
from exray.options import check_choice, check_int, check_real
from exray.utils import derive_seed

#: Smallest class that can be split into two clusters with a defined silhouette score.
MIN_CLASS_SIZE = 3

#: ART's cluster analyses (``ActivationDefence.valid_analysis``), under exray's names.
ANALYSES = ("smaller", "relative-size", "distance", "silhouette")


@dataclass(frozen=True)
class ActivationClustering:
    """Activation-clustering poisoned-sample detector.

    Args:
        n_components: dimensions kept by the reduction (ART's ``nb_dims``, 10); the reduction is skipped
            when the features have no more dimensions than this, and capped at the class's sample count.
        reduction: ``"pca"`` (ART's default) or ``"ica"`` (FastICA, the paper's choice).
        analysis: ``"smaller"``, ``"relative-size"``, ``"distance"`` or ``"silhouette"`` (module docstring).
        size_threshold: the smaller cluster's (rounded) share below which a class counts as poisoned.
        silhouette_threshold: silhouette score above which a class counts as poisoned (``"silhouette"``).
        normalize: preprocessing of the representations before the per-class analysis: ``"none"`` (ART),
            ``"standardize"`` (each feature to zero mean and unit variance over the whole set) or ``"l2"``
            (each sample to unit Euclidean norm).
        n_init: k-means restarts (k-means++ seeding). With 10, k-means often stopped in a local optimum
            in ICA's whitened space (missing a planted 10 % cluster, or splitting a Gaussian class 0.3/0.7).
        seed: seed of the reduction and of k-means (each class uses a seed derived from it).

    Scores: 1 − (size of the sample's cluster / size of its class), so members of a small cluster score
    high. Classes with fewer than 3 samples are skipped (never flagged, score 0).

    Per-class diagnostics: ``n``, ``n_components`` (None when not reduced), ``cluster_sizes``,
    ``relative_size`` (of the smaller cluster), ``silhouette`` (``"silhouette"`` only),
    ``poisoned_clusters``, ``flagged``, or ``skipped``.
    """

    name: ClassVar[str] = "activation_clustering"

    n_components: int = 10
    reduction: Literal["pca", "ica"] = "pca"
    analysis: Literal["smaller", "relative-size", "distance", "silhouette"] = "smaller"
    size_threshold: float = 0.35
    silhouette_threshold: float = 0.1
    normalize: Literal["none", "standardize", "l2"] = "none"
    n_init: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_components", self.n_components, 1)
        check_choice("reduction", self.reduction, ("pca", "ica"))
        check_choice("analysis", self.analysis, ANALYSES)
        check_real("size_threshold", self.size_threshold, 0.0, 0.5, low_open=True)
        check_real("silhouette_threshold", self.silhouette_threshold, -1.0, 1.0)
        check_choice("normalize", self.normalize, ("none", "standardize", "l2"))
        check_int("n_init", self.n_init, 1)
        check_int("seed", self.seed, 0)

    def detect(self, features: Any, labels: Any) -> DetectionResult:
        """Cluster each class of ``features`` (N, D) under its assigned ``labels`` (N,)."""
        x = self._normalized(as_features(features))
        y = as_labels(labels, x.shape[0])
        clusters: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # label -> (row indices, 0/1 assignment)
        classes: dict[int, dict[str, Any]] = {}
        for label in np.unique(y):
            index = np.flatnonzero(y == label)
            info, assignment = self._cluster_class(x[index], int(label))
            classes[int(label)] = info
            if assignment is not None:
                clusters[int(label)] = (index, assignment)

        if self.analysis == "distance":
            poisoned = self._by_distance(x, clusters)
        else:
            poisoned = {label: self._by_class(classes[label]) for label in clusters}
        scores = np.zeros(x.shape[0])
        flags = np.zeros(x.shape[0], dtype=bool)
        for label, (index, assignment) in clusters.items():
            sizes = np.bincount(assignment, minlength=2)
            scores[index] = 1.0 - sizes[assignment] / index.size
            flags[index] = np.isin(assignment, poisoned[label])
            classes[label].update(poisoned_clusters=list(poisoned[label]), flagged=bool(poisoned[label]))
        return DetectionResult(self.name, dataclasses.asdict(self), scores, flags, classes)

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self.normalize == "standardize":
            std = x.std(axis=0)
            return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        if self.normalize == "l2":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(norm > 0, norm, 1.0)
        return x

    def _reduce(self, x: np.ndarray, seed: int) -> np.ndarray | None:
        """The class's reduced representations, or None when ``x`` has at most ``n_components`` dimensions."""
        if x.shape[1] <= self.n_components:
            return None
        k = min(self.n_components, x.shape[0])
        if self.reduction == "pca":
            return PCA(n_components=k, svd_solver="full").fit_transform(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ica = FastICA(
                n_components=k, whiten="unit-variance", max_iter=1000, tol=0.005, random_state=seed % 2**32
            )
            return ica.fit_transform(x)

    def _cluster_class(self, x: np.ndarray, label: int) -> tuple[dict[str, Any], np.ndarray | None]:
        n = x.shape[0]
        info: dict[str, Any] = {"n": n, "flagged": False}
        if n < MIN_CLASS_SIZE:
            info["skipped"] = f"fewer than {MIN_CLASS_SIZE} samples"
            return info, None
        seed = derive_seed(self.seed, "activation_clustering", label)
        reduced = self._reduce(x, seed)
        space = x if reduced is None else reduced
        assignment = KMeans(n_clusters=2, n_init=self.n_init, random_state=seed % 2**32).fit_predict(space)
        sizes = np.bincount(assignment, minlength=2)
        info.update(
            n_components=None if reduced is None else reduced.shape[1],
            cluster_sizes=(int(sizes[0]), int(sizes[1])),
            relative_size=float(sizes.min() / n),
        )
        if self.analysis == "silhouette":
            info["silhouette"] = float(silhouette_score(space, assignment)) if sizes.min() > 0 else None
        return info, assignment

    def _by_class(self, info: dict[str, Any]) -> tuple[int, ...]:
        """The poisoned cluster ids of one class (ART's size, relative-size and silhouette analyses)."""
        sizes = np.array(info["cluster_sizes"])
        smaller = int(np.argmin(sizes))  # a tie: cluster 0, as ART's argmin
        if self.analysis == "smaller":
            return (smaller,) if sizes.min() > 0 else ()
        small = round(info["relative_size"], 2) < round(self.size_threshold, 2) and sizes.min() > 0
        if self.analysis == "silhouette":
            silhouette = info["silhouette"]
            small = small and silhouette is not None and round(silhouette, 4) > self.silhouette_threshold
        return (smaller,) if small else ()

    @staticmethod
    def _by_distance(
        x: np.ndarray, clusters: dict[int, tuple[np.ndarray, np.ndarray]]
    ) -> dict[int, tuple[int, ...]]:
        """ART's ``analyze_by_distance``: cluster j of class i is poisoned when some class k ≠ i is nearer to
        its median than class i, while class i is the nearer to the other cluster's median."""
        centres = {label: np.median(x[index], axis=0) for label, (index, _) in clusters.items()}
        out: dict[int, tuple[int, ...]] = {}
        for label, (index, assignment) in clusters.items():
            if np.bincount(assignment, minlength=2).min() == 0:
                out[label] = ()
                continue
            medians = [np.median(x[index[assignment == j]], axis=0) for j in (0, 1)]
            own = [float(np.linalg.norm(m - centres[label])) for m in medians]
            poisoned = []
            for j in (0, 1):
                for other, centre in centres.items():
                    if other == label:
                        continue
                    nearer = np.linalg.norm(medians[j] - centre) < own[j]
                    farther = np.linalg.norm(medians[1 - j] - centre) > own[1 - j]
                    if nearer and farther:
                        poisoned.append(j)
                        break
            out[label] = tuple(poisoned)
        return out
