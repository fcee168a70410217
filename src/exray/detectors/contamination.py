"""SCAn, the Statistical Contamination Analyzer (Tang, Wang, Tang and Zhang, "Demon in the Variant:
Statistical Analysis of DNNs for Robust Backdoor Contamination Detection", USENIX Security 2021, §4;
spec §6.4 third slot), as the authors' code runs it (github.com/TDteach/Demon-in-the-Variant: ``msrc/``
MATLAB and ``pysrc/SCAn.py``; the ports in backdoor-toolbox and BackdoorBench copy the latter).

Model (two-component decomposition). A representation is r = μ_class + ε, an identity vector
μ ~ N(0, S_u) plus a within-class variation ε ~ N(0, S_e), both after removing the global mean.

1. **Global model** (``global_model.m``): S_u and S_e are estimated by EM: E-step, each class identity is
   u_k = S_u (n_k S_u + S_e)⁺ Σ_{i∈k} rᵢ; M-step, S_u and S_e are the sample covariances of the
   identities u_{k(i)} and of the residuals rᵢ − u_{k(i)} over all samples. **Fitted on a clean reference
   set** — the authors fit it on a clean 10 % slice (``SCAn.m``), the ports on clean test samples. Without
   a reference the global model is fitted on the inspected set itself; S_e then holds the poisoned class's
   own spread, which hides the contamination once classes differ in covariance (docs/results.md, "SCAn
   with and without a clean reference"): pass a reference.
2. **Local model** (``local_model.m``, untangling): the local set is the inspected set plus the reference
   (the ports' ``concat[inspection, clean]``), centred by its mean; each class is split into two subgroups
   by 2-means in the Mahalanobis metric F = S_e⁺ (random initial assignments as the authors' code; best of
   ``n_init`` restarts — the authors use one start).
3. **Test statistic** (``calc_test``): J_k = (1/n_k) Σᵢ [‖rᵢ − μ_k‖²_F − ‖rᵢ − c_{g(i)}‖²_F], c_g the
   subgroup means and μ_k the class's one-identity estimate. The authors' code (every version of
   ``local_model.m``, ``pysrc/SCAn.py`` and the ports) computes **μ_k = S_e (n_k S_u + S_e)⁺ Σ_{i∈k} rᵢ**
   (``identity="authors"``, the default); ``identity="posterior"`` uses the Gaussian posterior mean
   S_u (n_k S_u + S_e)⁺ Σ rᵢ of step 1 instead. The two differ in the directions where S_u has no variance
   (S_u has rank ≤ classes − 1): there the authors' μ_k is n_k times the class mean, so J_k grows with the
   class's offset from the identity subspace learnt on the reference — which is what a poisoned subgroup
   adds.
4. **Decision**: J* = robust z-score of J_k across classes, |J_k − median J| / (1.4826 · MAD J)
   (``calc_anomaly_index.m``, two-sided; ``anomaly="upper"`` keeps only J above the median). A class is
   contaminated when ln J* > 2, i.e. **J* > e²** (the authors' plots and ``online_test.m``, BackdoorBench;
   backdoor-toolbox uses e). Normalising J by max(J) first, as the authors' code does, leaves J* unchanged
   and is omitted.
5. The authors flag classes only. Samples (the ports' rule, ``poisoned_subgroup="reference"``, the default
   with a reference set): in a contaminated class the subgroup holding fewer reference samples; without a
   reference (``"smaller"``, an exray rule) the smaller subgroup of the inspected samples.

**Reference size.** S_e is estimated from the reference alone, which needs ≫ D samples. When the reference
has fewer than ``reference_per_dim`` · D samples, both sets are projected onto their top
⌊n_ref / reference_per_dim⌋ principal components (fitted on inspected ∪ reference, so that a direction
only the poisoned samples span is kept) and the result says so (``summary["pca_components"]``).

Other details: EM stops on a relative change of (S_u, S_e) (the authors: absolute 0.01, which depends on the
features' scale); directions in which S_e has no variance are dropped (pseudo-inverses, as the authors').
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from exray.detectors._common import as_features, as_labels
from exray.detectors.result import DetectionResult
from exray.errors import InputError
from exray.metrics.robust import anomaly_index, upper_anomaly_index
from exray.options import check_choice, check_int, check_real
from exray.utils import derive_seed


@dataclass(frozen=True, eq=False)
class GlobalModel:
    """SCAn's global model: the identity and variation covariances S_u, S_e."""

    s_u: np.ndarray  # (D, D)
    s_e: np.ndarray  # (D, D)
    n_iter: int
    converged: bool


def _joint_basis(s_u: np.ndarray, s_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T (D, r) and γ (r,) with Tᵀ S_e T = I and Tᵀ S_u T = diag(γ), on the range of S_e.

    Then (n S_u + S_e)⁺ = T diag(1 / (n γ + 1)) Tᵀ and ‖x‖²_F = ‖xᵀ T‖² for F = S_e⁺.
    """
    lam, q = np.linalg.eigh(s_e)
    keep = lam > lam.max(initial=0.0) * s_e.shape[0] * np.finfo(np.float64).eps
    if not keep.any():
        raise InputError("SCAn: the representations have no within-class variance")
    root = q[:, keep] / np.sqrt(lam[keep])
    gamma, p = np.linalg.eigh(root.T @ s_u @ root)
    return root @ p, np.clip(gamma, 0.0, None)


def _posterior_identities(
    sums: np.ndarray, counts: np.ndarray, s_u: np.ndarray, basis: np.ndarray, gamma: np.ndarray
) -> np.ndarray:
    """Rows u_k = S_u (n_k S_u + S_e)⁺ Σ_{i∈k} rᵢ for class sums (L, D) and counts (L,)."""
    shrink = 1.0 / (counts[:, None] * gamma[None, :] + 1.0)
    return ((sums @ basis) * shrink) @ basis.T @ s_u


def _covariances(
    x: np.ndarray, gram: np.ndarray, sums: np.ndarray, counts: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sample covariances (ddof 1) of u_{k(i)} and of rᵢ − u_{k(i)} over all N samples, from class sums."""
    n = counts.sum()
    weighted = counts[:, None] * u
    u_mean = weighted.sum(axis=0) / n
    s_u = (u.T @ weighted - n * np.outer(u_mean, u_mean)) / (n - 1)
    e_mean = (x.sum(axis=0) - weighted.sum(axis=0)) / n
    cross = sums.T @ u
    e_scatter = gram - cross - cross.T + u.T @ weighted
    s_e = (e_scatter - n * np.outer(e_mean, e_mean)) / (n - 1)
    return (s_u + s_u.T) / 2.0, (s_e + s_e.T) / 2.0


def _class_statistics(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.zeros((classes.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    return sums, counts


def _two_means(z: np.ndarray, rng: np.random.Generator, n_init: int, max_iter: int) -> np.ndarray:
    """Boolean subgroup assignment of the rows of ``z`` minimising the within-subgroup scatter."""
    best, best_scatter = np.zeros(z.shape[0], dtype=bool), _scatter(z, np.zeros(z.shape[0], dtype=bool))
    for _ in range(n_init):
        group = rng.random(z.shape[0]) >= 0.5
        for _ in range(max_iter):
            if group.all() or not group.any():
                break
            c1, c0 = z[group].mean(axis=0), z[~group].mean(axis=0)
            new = ((z - c1) ** 2).sum(axis=1) < ((z - c0) ** 2).sum(axis=1)
            if np.array_equal(new, group):
                break
            group = new
        scatter = _scatter(z, group)
        if scatter < best_scatter:
            best, best_scatter = group, scatter
    return best


def _scatter(z: np.ndarray, group: np.ndarray) -> float:
    """Σᵢ ‖zᵢ − (mean of zᵢ's subgroup)‖²."""
    total = 0.0
    for part in (z[group], z[~group]):
        if part.shape[0]:
            total += float(((part - part.mean(axis=0)) ** 2).sum())
    return total


@dataclass(frozen=True, eq=False)
class _Reduction:
    """The principal-component projection applied when the reference is too small for S_e (rows @ basis)."""

    mean: np.ndarray  # (D,)
    basis: np.ndarray  # (D, k)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.basis


def _principal_components(x: np.ndarray, k: int) -> _Reduction:
    mean = x.mean(axis=0)
    centred = x - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return _Reduction(mean, vectors[:, ::-1][:, :k].copy())


@dataclass(frozen=True)
class SCAn:
    """SCAn poisoned-sample detector (see the module docstring for the algorithm).

    Args:
        threshold: a class is contaminated when its robust z-score J* exceeds this (e², i.e. ln J* > 2).
        identity: the one-identity estimate μ_k in J: ``"authors"`` (S_e (n S_u + S_e)⁺ Σr, the authors'
            ``calc_test``) or ``"posterior"`` (S_u (n S_u + S_e)⁺ Σr).
        anomaly: ``"two-sided"`` (|J − median| / MAD, the authors') or ``"upper"`` (only J above the median).
        poisoned_subgroup: which subgroup of a contaminated class is flagged: ``"reference"`` (fewer
            reference samples; needs a reference), ``"smaller"``, or ``"auto"`` (reference when given).
        reference_per_dim: reference samples needed per feature dimension; below it, PCA (module docstring).
        em_max_iter, em_tol: EM stops after ``em_max_iter`` iterations or when the relative Frobenius
            change of (S_u, S_e) falls below ``em_tol``.
        n_init, split_max_iter: restarts and iteration cap of each class's 2-subgroup split.
        seed: seed of the random initial splits (each class uses a seed derived from it).

    Scores: ‖r − c_clean‖²_F − ‖r − c_poison‖²_F, positive for samples nearer the subgroup that would be
    flagged (0 in skipped classes). Classes with fewer than 2 samples are skipped; the class-level
    test needs at least 3 classes with 2+ samples. With ``"reference"``, a class without reference
    samples (or with as many in each subgroup) falls back to the smaller subgroup.

    Per-class diagnostics: ``n``, ``J``, ``anomaly_index`` (J*), ``ln_anomaly_index``, ``flagged``,
    ``subgroup_sizes`` (inspected samples in the suspect subgroup, in the other), or ``skipped``.
    Summary: ``global_model`` (``"reference"`` or ``"inspected"``), ``reference_size``, ``feature_dim``,
    ``pca_components`` (None when no reduction), ``notes``, ``em_iterations``, ``em_converged``.
    """

    name: ClassVar[str] = "scan"

    threshold: float = math.exp(2.0)
    identity: Literal["authors", "posterior"] = "authors"
    anomaly: Literal["two-sided", "upper"] = "two-sided"
    poisoned_subgroup: Literal["auto", "smaller", "reference"] = "auto"
    reference_per_dim: float = 10.0
    em_max_iter: int = 100
    em_tol: float = 1e-6
    n_init: int = 5
    split_max_iter: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_real("threshold", self.threshold, 0.0, math.inf, low_open=True)
        check_choice("identity", self.identity, ("authors", "posterior"))
        check_choice("anomaly", self.anomaly, ("two-sided", "upper"))
        check_choice("poisoned_subgroup", self.poisoned_subgroup, ("auto", "smaller", "reference"))
        check_real("reference_per_dim", self.reference_per_dim, 0.0, 1e6)
        check_int("em_max_iter", self.em_max_iter, 1)
        check_real("em_tol", self.em_tol, 0.0, 1.0, low_open=True)
        check_int("n_init", self.n_init, 1)
        check_int("split_max_iter", self.split_max_iter, 1)
        check_int("seed", self.seed, 0)

    def detect(
        self,
        features: Any,
        labels: Any,
        reference_features: Any | None = None,
        reference_labels: Any | None = None,
    ) -> DetectionResult:
        """Run SCAn on ``features`` (N, D) with assigned ``labels`` (N,).

        ``reference_features`` / ``reference_labels``: a set known to be clean (e.g. held-out clean
        samples); the global model is fitted on it alone and it joins the local model (module docstring).
        """
        x = as_features(features)
        y = as_labels(labels, x.shape[0])
        dim = x.shape[1]
        ref = self._reference(reference_features, reference_labels, x.shape[1])
        rule = self.poisoned_subgroup
        if rule == "auto":
            rule = "smaller" if ref is None else "reference"
        if rule == "reference" and ref is None:
            raise InputError("poisoned_subgroup='reference' needs reference_features and reference_labels")
        notes: list[str] = []
        components = None
        if ref is None:
            ref_x, ref_y = x[:0], y[:0]
            notes.append(
                "no clean reference: the global model is fitted on the inspected set; pass "
                "reference_features (the authors' setting), or use identity='posterior', the only "
                "identity that works without one"
            )
        else:
            ref_x, ref_y = ref
            needed = self.reference_per_dim * x.shape[1]
            if ref_x.shape[0] < needed:
                components = max(1, min(x.shape[1], int(ref_x.shape[0] // max(self.reference_per_dim, 1.0))))
                reduce = _principal_components(np.concatenate([x, ref_x]), components)
                x, ref_x = reduce(x), reduce(ref_x)
                notes.append(
                    f"the reference ({ref_x.shape[0]} samples) is under {self.reference_per_dim:g} x the "
                    f"feature dimension {reduce.mean.size}: features reduced to {components} principal "
                    "components"
                )
        model = self.fit_global_model(*((x, y) if ref is None else (ref_x, ref_y)))
        basis, gamma = _joint_basis(model.s_u, model.s_e)
        centre = np.concatenate([x, ref_x]).mean(axis=0)

        scores = np.zeros(x.shape[0])
        split: dict[int, np.ndarray] = {}
        classes: dict[int, dict[str, Any]] = {}
        for label in np.unique(y):
            index = np.flatnonzero(y == label)
            info: dict[str, Any] = {"n": int(index.size), "flagged": False}
            classes[int(label)] = info
            if index.size < 2:
                info["skipped"] = "fewer than 2 samples"
                continue
            members = np.concatenate([x[index], ref_x[ref_y == label]]) - centre
            j, poisoned, class_scores = self._untangle(
                members, index.size, model.s_u, basis, gamma, int(label), rule
            )
            info.update(J=j, subgroup_sizes=(int(poisoned.sum()), int((~poisoned).sum())))
            scores[index] = class_scores
            split[int(label)] = index[poisoned]

        if len(split) < 3:
            raise InputError(
                f"SCAn compares classes and needs at least 3 classes with 2+ samples, got {len(split)}"
            )
        labels_tested = list(split)
        j_star = (upper_anomaly_index if self.anomaly == "upper" else anomaly_index)(
            np.array([classes[k]["J"] for k in labels_tested])
        )
        flags = np.zeros(x.shape[0], dtype=bool)
        for label, value in zip(labels_tested, j_star):
            flagged = bool(value > self.threshold)
            classes[label].update(
                anomaly_index=float(value), ln_anomaly_index=float(np.log(value)) if value > 0 else -math.inf
            )
            classes[label]["flagged"] = flagged
            if flagged:
                flags[split[label]] = True
        summary = {
            "global_model": "inspected" if ref is None else "reference",
            "reference_size": int(ref_x.shape[0]),
            "feature_dim": int(dim),
            "pca_components": components,
            "poisoned_subgroup": rule,
            "notes": notes,
            "em_iterations": model.n_iter,
            "em_converged": model.converged,
        }
        return DetectionResult(self.name, dataclasses.asdict(self), scores, flags, classes, summary)

    @staticmethod
    def _reference(
        features: Any | None, labels: Any | None, dim: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if features is None and labels is None:
            return None
        if features is None or labels is None:
            raise InputError("give both reference_features and reference_labels, or neither")
        rx = as_features(features, "reference_features")
        if rx.shape[1] != dim:
            raise InputError(f"reference_features have {rx.shape[1]} features but features have {dim}")
        return rx, as_labels(labels, rx.shape[0], "reference_labels")

    def fit_global_model(self, x: np.ndarray, y: np.ndarray) -> GlobalModel:
        """EM estimate of the identity and variation covariances S_u, S_e (step 1)."""
        x, y = as_features(x), as_labels(y, np.asarray(x).shape[0])
        if np.unique(y).size < 2 or x.shape[0] < 3:
            raise InputError("SCAn's global model needs at least 2 classes and 3 samples")
        xc = x - x.mean(axis=0)
        sums, counts = _class_statistics(xc, y)
        gram = xc.T @ xc
        s_u, s_e = _covariances(xc, gram, sums, counts, sums / counts[:, None])
        for iteration in range(1, self.em_max_iter + 1):
            basis, gamma = _joint_basis(s_u, s_e)
            u = _posterior_identities(sums, counts, s_u, basis, gamma)
            new_u, new_e = _covariances(xc, gram, sums, counts, u)
            change = np.linalg.norm(new_u - s_u) + np.linalg.norm(new_e - s_e)
            scale = np.linalg.norm(s_u) + np.linalg.norm(s_e)
            s_u, s_e = new_u, new_e
            if change <= self.em_tol * scale:
                return GlobalModel(s_u, s_e, iteration, True)
        return GlobalModel(s_u, s_e, self.em_max_iter, False)

    def _untangle(
        self,
        members: np.ndarray,
        n_inspected: int,
        s_u: np.ndarray,
        basis: np.ndarray,
        gamma: np.ndarray,
        label: int,
        rule: str,
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """J statistic, the poisoned-subgroup mask and scores of a class's inspected samples (steps 2–3, 5).

        ``members``: the class's centred inspected samples, followed by its reference samples.
        """
        z = members @ basis
        sums = members.sum(axis=0, keepdims=True)
        if self.identity == "authors":  # Tᵀ S_e (n S_u + S_e)⁺ Σr = diag(1 / (n γ + 1)) Tᵀ Σr
            m = ((sums @ basis) / (members.shape[0] * gamma + 1.0))[0]
        else:
            m = (_posterior_identities(sums, np.array([members.shape[0]]), s_u, basis, gamma) @ basis)[0]
        rng = np.random.default_rng(derive_seed(self.seed, "scan", label))
        group = _two_means(z, rng, self.n_init, self.split_max_iter)
        j = (float(((z - m) ** 2).sum()) - _scatter(z, group)) / z.shape[0]

        if group.all() or not group.any():
            return j, np.zeros(n_inspected, dtype=bool), np.zeros(n_inspected)
        poisoned_side = self._poisoned_side(z, group, n_inspected, m, rule)
        poisoned = group[:n_inspected] == poisoned_side
        c_poison = z[group == poisoned_side].mean(axis=0)
        c_clean = z[group != poisoned_side].mean(axis=0)
        zi = z[:n_inspected]
        scores = ((zi - c_clean) ** 2).sum(axis=1) - ((zi - c_poison) ** 2).sum(axis=1)
        return j, poisoned, scores

    @staticmethod
    def _poisoned_side(
        z: np.ndarray, group: np.ndarray, n_inspected: int, identity: np.ndarray, rule: str
    ) -> bool:
        """Which value of ``group`` marks the poisoned subgroup."""
        if rule == "reference":
            ref_group = group[n_inspected:]
            in_true, in_false = int(ref_group.sum()), int((~ref_group).sum())
            if in_true != in_false:
                return in_true < in_false
        inspected = group[:n_inspected]
        size_true, size_false = int(inspected.sum()), int((~inspected).sum())
        if size_true != size_false:
            return size_true < size_false
        # A tie: the subgroup whose mean lies farther from the class identity.
        far_true = ((z[group].mean(axis=0) - identity) ** 2).sum()
        far_false = ((z[~group].mean(axis=0) - identity) ** 2).sum()
        return bool(far_true > far_false)
