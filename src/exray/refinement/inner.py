"""Baselines 1 and 2 of the paper's Table 1: Inner L2 and the inner random forest (EXP §4.1, spec §4.7).

* **Inner L2**: the L2 distance between the average normalised feature maps of V+t and T at the EX-RAY
  layer. A natural trigger makes V look like T, so a small distance means natural.
* **Inner RF**: a random forest on per-trigger features — L2(V+t, T), L2(T+t, T), L2(V, T) and the mean
  logits of V, V+t and T — trained on the triggers of half of the labelled models and applied to the
  other half ("we use half of the models to train a random forest classifier … and test it on the other
  half"). [CHOICE] spec §4.7.2: of each mean logit vector only the V and T entries are kept, so the
  feature length does not depend on the number of classes; scikit-learn defaults with 100 trees.
  :func:`split_models` makes the seeded split by model; :func:`cross_fit` scores every model with the
  forest trained on the other half (two folds), so that every model of a population gets a score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from exray.differencing import TriggerCase
from exray.errors import ConfigError, InputError
from exray.refinement.base import RefinementMethod, TriggerScore
from exray.refinement.features import FeatureSets, layer_cut, normalised_distance
from exray.utils import derive_seed

#: Names of the random forest's per-trigger features, in order.
RF_FEATURES: tuple[str, ...] = (
    "l2_stamped_victim_vs_target",
    "l2_stamped_target_vs_target",
    "l2_victim_vs_target",
    "logit_victim@V",
    "logit_victim@T",
    "logit_stamped_victim@V",
    "logit_stamped_victim@T",
    "logit_target@V",
    "logit_target@T",
)


class InnerL2Method(RefinementMethod):
    """Baseline 1: score = L2(mean normalised features of V+t, of T) at the EX-RAY layer; larger = more
    injected; the threshold is chosen on a labelled population."""

    name = "inner_l2"
    title = "Inner L2"

    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        sets = FeatureSets(layer_cut(model, layer, cases[0].victim))
        scores = []
        for case in cases:
            stamped = sets(case.stamped, "stamped images").channel_means
            target = sets(case.target, "target images").channel_means
            scores.append(TriggerScore(normalised_distance(stamped, target), {"layer": sets.cut.layer}))
        return scores


class RandomForestMethod(RefinementMethod):
    """Baseline 2: a random forest's P(injected) from :data:`RF_FEATURES`; natural when below 0.5 (the
    forest's own decision). Needs a fitted forest (:meth:`fit`, or :func:`cross_fit` on a population)."""

    name = "inner_rf"
    title = "Inner RF"
    fixed_threshold = 0.5
    needs_stamped_target = True

    def __init__(self, *, trees: int = 100, forest: RandomForestClassifier | None = None):
        super().__init__()
        if isinstance(trees, bool) or not isinstance(trees, int) or trees < 1:
            raise ConfigError(f"trees must be a positive integer, got {trees!r}")
        self.trees = trees
        self.forest = forest

    def options(self) -> dict[str, Any]:
        return {"trees": self.trees}

    def features(
        self, model: nn.Module, cases: Sequence[TriggerCase], *, layer: str | None = None
    ) -> list[list[float]]:
        """:data:`RF_FEATURES` of every case (each needs ``stamped_target``, see
        :class:`~exray.refinement.base.RefinementCase`)."""
        if not cases:
            return []
        stamped_targets = [getattr(case, "stamped_target", None) for case in cases]
        for i, case in enumerate(cases):
            if stamped_targets[i] is None:
                raise InputError(f"case {i}: the random forest needs the target images stamped (T+t)")
            if case.target_label is None:
                raise InputError(f"case {i}: the random forest needs the target label")
        sets = FeatureSets(layer_cut(model, layer, cases[0].victim))
        rows = []
        for case, stamped_target in zip(cases, stamped_targets):
            v = sets(case.victim, "victim images")
            t = sets(case.target, "target images")
            vt = sets(case.stamped, "stamped images")
            tt = sets(stamped_target, "stamped target images")
            labels = [case.victim_label, case.target_label]
            rows.append(
                [
                    normalised_distance(vt.channel_means, t.channel_means),
                    normalised_distance(tt.channel_means, t.channel_means),
                    normalised_distance(v.channel_means, t.channel_means),
                    *(float(x.logits.mean(0)[c]) for x in (v, vt, t) for c in labels),
                ]
            )
        return rows

    def fit(self, features: Sequence[Sequence[float]], injected: Sequence[bool], *, seed: int = 0):
        """A copy of this method with a forest trained on ``features`` labelled ``injected`` (seeded)."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(injected, dtype=bool)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != len(RF_FEATURES) or len(y) != len(x):
            raise InputError(
                f"fit needs one row of {len(RF_FEATURES)} features per label, got {x.shape} and {len(y)}"
            )
        forest = RandomForestClassifier(
            n_estimators=self.trees, random_state=derive_seed(seed, "inner_rf") % 2**32
        )
        forest.fit(x, y)
        return RandomForestMethod(trees=self.trees, forest=forest)

    def probabilities(self, features: Sequence[Sequence[float]]) -> list[float]:
        """P(injected) of each feature row under the fitted forest."""
        if self.forest is None:
            raise ConfigError("the random forest is not fitted: call fit() or use cross_fit()")
        if not features:
            return []
        proba = self.forest.predict_proba(np.asarray(features, dtype=np.float64))
        classes = list(self.forest.classes_)
        if True in classes:
            return [float(p) for p in proba[:, classes.index(True)]]
        return [0.0] * len(features)  # trained on natural triggers only

    def scores_of(self, rows: Sequence[Sequence[float]]) -> list[TriggerScore]:
        """One score per feature row: P(injected) under the fitted forest, with the named features."""
        return [
            TriggerScore(p, {"features": dict(zip(RF_FEATURES, row))})
            for p, row in zip(self.probabilities(rows), rows)
        ]

    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        return self.scores_of(self.features(model, cases, layer=layer))


def split_models(
    models: Sequence[str], poisoned: Sequence[bool], *, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Two halves of ``models`` for training and testing, split by model (never by trigger), stratified by
    ``poisoned`` and seeded: the same names and seed give the same halves in any order of ``models``."""
    if len(models) != len(poisoned) or len(set(models)) != len(models):
        raise InputError("split_models needs unique model names and one poisoned flag per model")
    halves: tuple[list[str], list[str]] = ([], [])
    for flag in (False, True):
        group = sorted(m for m, p in zip(models, poisoned) if bool(p) == flag)
        order = np.random.default_rng(derive_seed(seed, "rf_split", int(flag))).permutation(len(group))
        for index in order:
            halves[0 if len(halves[0]) <= len(halves[1]) else 1].append(group[index])
    return sorted(halves[0]), sorted(halves[1])


def cross_fit(
    features: Mapping[str, Sequence[Sequence[float]]],
    injected: Mapping[str, Sequence[bool]],
    halves: tuple[Sequence[str], Sequence[str]],
    *,
    trees: int = 100,
    seed: int = 0,
) -> dict[str, list[TriggerScore]]:
    """Score every model's triggers with a forest trained on the *other* half's triggers.

    ``features``/``injected``: per model, one feature row and one ground-truth label per trigger.
    A half whose other half has no triggers to train on gets ``value=None`` scores with a note.
    """
    scored: dict[str, list[TriggerScore]] = {}
    for test, train in ((halves[0], halves[1]), (halves[1], halves[0])):
        rows = [row for m in train for row in features[m]]
        labels = [bool(y) for m in train for y in injected[m]]
        fitted = RandomForestMethod(trees=trees).fit(rows, labels, seed=seed) if rows else None
        for model in test:
            if fitted is None:
                note = "no triggers in the other half of the models to train the forest on"
                scored[model] = [TriggerScore(None, note=note) for _ in features[model]]
                continue
            scored[model] = fitted.scores_of(list(features[model]))
    return scored
