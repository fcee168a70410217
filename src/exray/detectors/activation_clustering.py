"""Activation clustering (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks by Activation
Clustering", 2018), spec §6.4.

Per assigned class: reduce the penultimate-layer representations to 10 dimensions (FastICA as the paper
and ART, or PCA as backdoor-toolbox), split them with 2-means, and flag the smaller cluster when the
class looks poisoned:

* ``criterion="size"`` (default): the smaller cluster holds at most ``size_threshold`` (0.35) of the class;
* ``criterion="silhouette"``: the 2-means silhouette score exceeds ``silhouette_threshold``;
* ``criterion="size_and_silhouette"``: both (ART's silhouette analyser).

FastICA uses ART's settings (max_iter 1000, tol 0.005). Its output is an orthogonal rotation of the
whitened top principal components, so the 2-means split (which only sees distances) is the same whether
or not ICA converged — its convergence warnings are therefore silenced. ICA and PCA differ only in that
ICA whitens: a 10 % cluster then spans a unit-variance component like every other, which makes the split
harder to find than with PCA (hence many k-means restarts by default).

The default silhouette threshold 0.15 is backdoor-toolbox's CIFAR-10 value (ART uses 0.1); a 2-means
split of a pure Gaussian class scores about 0.07 in 10 ICA dimensions. With the size criterion, a pure
Gaussian class of 200 samples in 64-D is still split at ≤ 0.35 about 1 % of the time (the optimal 2-means
split of a small sample is sometimes unbalanced), so expect occasional clean-class flags on small classes.
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

from exray.detectors._common import as_features, as_labels, check_choice, check_int, check_real
from exray.detectors.result import DetectionResult
from exray.utils import derive_seed

#: Smallest class that can be split into two clusters with a defined silhouette score.
MIN_CLASS_SIZE = 3


@dataclass(frozen=True)
class ActivationClustering:
    """Activation-clustering poisoned-sample detector.

    Args:
        n_components: dimensions kept by the reduction (10 in the paper); capped at the class's
            sample count and the feature dimension.
        reduction: ``"ica"`` (FastICA, the paper's choice) or ``"pca"``.
        criterion: ``"size"``, ``"silhouette"`` or ``"size_and_silhouette"`` (see the module docstring).
        size_threshold: largest relative size of the smaller cluster that counts as poisoned.
        silhouette_threshold: silhouette score above which the class counts as poisoned.
        normalize: preprocessing of the representations before the per-class analysis: ``"none"``,
            ``"standardize"`` (each feature to zero mean and unit variance over the whole set) or
            ``"l2"`` (each sample to unit Euclidean norm).
        n_init: k-means restarts (k-means++ seeding). With 10, k-means often stopped in a local optimum
            in the whitened space (missing a planted 10 % cluster, or splitting a Gaussian class 0.3/0.7).
        seed: seed of the reduction and of k-means (each class uses a seed derived from it).

    Scores: 1 − (size of the sample's cluster / size of its class), so members of a small cluster score
    high. Classes with fewer than 3 samples are skipped (never flagged, score 0).

    Per-class diagnostics: ``n``, ``n_components``, ``cluster_sizes``, ``relative_size`` (of the smaller
    cluster), ``silhouette`` (None with the size criterion), ``flagged``, or ``skipped``.
    """

    name: ClassVar[str] = "activation_clustering"

    n_components: int = 10
    reduction: Literal["ica", "pca"] = "ica"
    criterion: Literal["size", "silhouette", "size_and_silhouette"] = "size"
    size_threshold: float = 0.35
    silhouette_threshold: float = 0.15
    normalize: Literal["none", "standardize", "l2"] = "none"
    n_init: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_components", self.n_components, 1)
        check_choice("reduction", self.reduction, ("ica", "pca"))
        check_choice("criterion", self.criterion, ("size", "silhouette", "size_and_silhouette"))
        check_real("size_threshold", self.size_threshold, 0.0, 0.5, low_open=True)
        check_real("silhouette_threshold", self.silhouette_threshold, -1.0, 1.0)
        check_choice("normalize", self.normalize, ("none", "standardize", "l2"))
        check_int("n_init", self.n_init, 1)
        check_int("seed", self.seed, 0)

    def detect(self, features: Any, labels: Any) -> DetectionResult:
        """Cluster each class of ``features`` (N, D) under its assigned ``labels`` (N,)."""
        x = self._normalized(as_features(features))
        y = as_labels(labels, x.shape[0])
        scores = np.zeros(x.shape[0])
        flags = np.zeros(x.shape[0], dtype=bool)
        classes: dict[int, dict[str, Any]] = {}
        for label in np.unique(y):
            index = np.flatnonzero(y == label)
            info, class_scores, class_flags = self._analyse_class(x[index], int(label))
            scores[index] = class_scores
            flags[index] = class_flags
            classes[int(label)] = info
        return DetectionResult(self.name, dataclasses.asdict(self), scores, flags, classes)

    def _normalized(self, x: np.ndarray) -> np.ndarray:
        if self.normalize == "standardize":
            std = x.std(axis=0)
            return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        if self.normalize == "l2":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(norm > 0, norm, 1.0)
        return x

    def _reduce(self, x: np.ndarray, seed: int) -> np.ndarray:
        k = min(self.n_components, x.shape[0], x.shape[1])
        if self.reduction == "pca":
            return PCA(n_components=k, svd_solver="full").fit_transform(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ica = FastICA(
                n_components=k, whiten="unit-variance", max_iter=1000, tol=0.005, random_state=seed % 2**32
            )
            return ica.fit_transform(x)

    def _analyse_class(self, x: np.ndarray, label: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        n = x.shape[0]
        info: dict[str, Any] = {"n": n, "flagged": False}
        if n < MIN_CLASS_SIZE:
            info["skipped"] = f"fewer than {MIN_CLASS_SIZE} samples"
            return info, np.zeros(n), np.zeros(n, dtype=bool)
        seed = derive_seed(self.seed, "activation_clustering", label)
        reduced = self._reduce(x, seed)
        assignment = KMeans(n_clusters=2, n_init=self.n_init, random_state=seed % 2**32).fit_predict(reduced)
        sizes = np.bincount(assignment, minlength=2)
        smaller = int(np.argmin(sizes))
        relative_size = float(sizes[smaller] / n)
        silhouette = None
        if self.criterion != "size" and sizes.min() > 0:
            silhouette = float(silhouette_score(reduced, assignment))
        size_poisoned = relative_size <= self.size_threshold
        silhouette_poisoned = silhouette is not None and silhouette > self.silhouette_threshold
        flagged = {
            "size": size_poisoned,
            "silhouette": silhouette_poisoned,
            "size_and_silhouette": size_poisoned and silhouette_poisoned,
        }[self.criterion] and bool(sizes.min() > 0)
        info.update(
            n_components=reduced.shape[1],
            cluster_sizes=(int(sizes[0]), int(sizes[1])),
            relative_size=relative_size,
            silhouette=silhouette,
            flagged=flagged,
        )
        scores = 1.0 - sizes[assignment] / n
        flags = (assignment == smaller) if flagged else np.zeros(n, dtype=bool)
        return info, scores, flags
