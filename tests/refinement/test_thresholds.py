"""Threshold selection: the best model-level separation on a labelled population (spec §4.7)."""

import pytest

from exray.errors import InputError
from exray.refinement import flag_models, select_thresholds
from exray.refinement.thresholds import candidate_thresholds


def test_candidates_are_midpoints_plus_both_ends():
    assert candidate_thresholds([3.0, 1.0, 1.0, 2.0]).tolist() == [0.0, 1.5, 2.5, 4.0]


def test_picks_the_gap_between_clean_and_trojaned_models():
    # clean models' strongest triggers score 1 and 2, trojaned ones 5 and 6: threshold 3.5 separates them
    models = [[("patch", 1.0)], [("patch", 2.0), ("patch", 0.5)], [("patch", 5.0)], [("patch", 6.0)]]
    choice = select_thresholds(models, [False, False, True, True])
    assert choice.thresholds == {"patch": 3.5}
    assert choice.accuracy == 1.0
    assert (choice.confusion.tp, choice.confusion.fp) == (2, 0)


def test_the_best_separation_when_none_is_perfect():
    # scores of clean: 1, 4; trojaned: 3, 5, 6 — the best cut keeps 3 (acc 4/5) rather than pruning it
    models = [[("patch", s)] for s in (1.0, 4.0, 3.0, 5.0, 6.0)]
    labels = [False, False, True, True, True]
    choice = select_thresholds(models, labels)
    assert choice.accuracy == pytest.approx(0.8)
    # 2.0 (the clean 4 flagged) and 4.5 (the trojaned 3 missed) both reach 4/5: fewer false negatives wins
    assert choice.thresholds == {"patch": 2.0}
    assert flag_models(models, choice.thresholds) == [False, True, True, True, True]


def test_one_threshold_per_kind_is_searched_jointly():
    # patch scores separate at 2.5, filter scores at 25 — one joint threshold could not do both
    models = [
        [("patch", 1.0), ("filter", 10.0)],
        [("patch", 2.0)],
        [("patch", 3.0)],
        [("filter", 40.0), ("patch", 0.5)],
        [("filter", 20.0)],
    ]
    labels = [False, False, True, True, False]
    choice = select_thresholds(models, labels)
    assert choice.accuracy == 1.0
    assert 2.0 < choice.thresholds["patch"] < 3.0 and 20.0 < choice.thresholds["filter"] < 40.0
    assert choice.combinations > len(models)


def test_unscored_triggers_always_flag_and_models_without_triggers_never_do():
    models = [[("filter", None)], [], [("patch", 1.0)], [("patch", 9.0)]]
    choice = select_thresholds(models, [True, False, False, True])
    assert choice.accuracy == 1.0
    assert flag_models(models, choice.thresholds) == [True, False, False, True]


def test_ties_go_to_the_lowest_threshold():
    models = [[("patch", 1.0)], [("patch", 1.0)]]  # every threshold gives 1 of 2
    assert select_thresholds(models, [True, False]).thresholds == {"patch": 0.0}


def test_bad_input():
    with pytest.raises(InputError, match="one label per model"):
        select_thresholds([[("patch", 1.0)]], [True, False])
    with pytest.raises(InputError, match="kind"):
        select_thresholds([[("blend", 1.0)]], [True])
    with pytest.raises(InputError, match="finite"):
        select_thresholds([[("patch", float("nan"))]], [True])
