"""Neural Cleanse (spec §3): the MAD test in closed form, the universal scan flags a planted backdoor and
not a clean model, the label-specific scan reports the planted pair, and the cost schedule behaves."""

import json

import pytest
import torch

from exray.errors import ConfigError, InputError
from exray.scanners import get_scanner, mad_anomaly
from exray.scanners.inversion import EpochStats
from exray.scanners.nc_inversion import NCInversion


def test_mad_matches_the_closed_form():
    norms = [10.0, 12.0, 11.0, 13.0, 2.0, 12.0]
    out = mad_anomaly(norms)
    # median 11.5; |ℓ − median| = 1.5, .5, .5, 1.5, 9.5, .5 → median 1.0 → MAD 1.4826
    assert out["median"] == 11.5 and out["mad"] == pytest.approx(1.4826)
    assert out["anomaly_index"] == pytest.approx(9.5 / 1.4826)
    assert out["flagged"] == [4]
    assert mad_anomaly([5.0, 5.0, 5.0])["anomaly_index"] == 0.0  # MAD 0: nothing is an outlier
    assert mad_anomaly([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])["flagged"] == []  # evenly spread: no outlier
    # a label far *above* the median is never flagged
    assert mad_anomaly([10.0, 10.5, 11.0, 9.5, 50.0])["flagged"] == []
    with pytest.raises(InputError):
        mad_anomaly([])


def test_universal_nc_flags_the_planted_label_and_not_the_clean_model(area_models):
    clean, trojaned, examples = area_models
    scanner = get_scanner("nc_universal")
    bad = scanner.scan(trojaned, examples, seed=0)
    assert bad.diagnostics["flagged"] == [2] and bad.diagnostics["anomaly_index"] > 2
    (found,) = bad.triggers
    assert found.target == 2 and found.asr >= 0.99 and found.universal_asr >= 0.9
    assert found.details["norm"] < min(n for i, n in enumerate(bad.diagnostics["norms"]) if i != 2) / 3
    good = scanner.scan(clean, examples, seed=0)
    assert good.diagnostics["flagged"] == [] and good.diagnostics["anomaly_index"] < 2 and not good.triggers
    assert good.scanner == "nc_universal" and set(good.timings) == {"inversion", "validation"}
    json.dumps(good.to_dict())


def test_label_specific_nc_reports_the_planted_pair(area_models):
    _, trojaned, examples = area_models
    victims = {c: examples[c] for c in (0, 1, 3)} | {2: examples[2]}
    result = get_scanner("nc", pairs="short_run", targets_per_victim=1, prefilter_epochs=15).scan(
        trojaned, victims, seed=0
    )
    pairs = {(r["victim"], r["target"]) for r in result.diagnostics["pairs"]}
    assert {(0, 2), (1, 2), (3, 2)} <= pairs  # the short run keeps the cheapest target of each victim
    planted = [t for t in result.triggers if t.target == 2]
    assert {t.victim for t in planted} == {0, 1, 3}
    assert all(t.asr >= 0.99 and t.details["norm"] <= result.diagnostics["norm_bound"] for t in planted)


def test_mad_detection_keeps_only_outlying_pairs(area_models):
    """detection="mad" (spec §3.3): of the pairs that pass ASR and size, only those whose norm is a MAD
    outlier among every inverted pair's are reported; the planted pairs are such outliers, and the MAD
    records are the closed form over the pairs' norms."""
    _, trojaned, examples = area_models
    # a size bound of 90 % of the image: natural pairs pass it, so only the MAD test can tell them apart
    options = {
        "pairs": "short_run",
        "targets_per_victim": 2,
        "prefilter_epochs": 15,
        "max_norm_fraction": 0.9,
    }
    bound = get_scanner("nc", **options).scan(trojaned, examples, seed=0)
    mad = get_scanner("nc", detection="mad", **options).scan(trojaned, examples, seed=0)
    records = mad.diagnostics["pairs"]
    assert records == [  # the same inversions: only what is reported differs
        {**r, "passed": r["passed"] and r["outlier"]} for r in bound.diagnostics["pairs"]
    ]
    expected = mad_anomaly([r["norm"] for r in records])
    assert [r["outlier"] for r in records] == [i in expected["flagged"] for i in range(len(records))]
    assert [r["anomaly_index"] for r in records] == pytest.approx(expected["label_index"])
    reported = {(t.victim, t.target) for t in mad.triggers}
    assert reported == {(r["victim"], r["target"]) for r in records if r["passed"]}
    assert reported <= {(t.victim, t.target) for t in bound.triggers}
    assert {(v, 2) for v in (0, 1, 3, 4, 5)} <= reported  # the planted pairs are outliers
    assert {t.target for t in bound.triggers} != {2}  # natural pairs passed the bound ...
    assert {t.target for t in mad.triggers} == {2}  # ... but not the MAD test
    assert all(t.details["pair_anomaly_index"] > 2 for t in mad.triggers)


def test_victim_images_bounds_the_images_of_a_pair(area_models, monkeypatch):
    _, trojaned, examples = area_models
    seen = []
    original = get_scanner("nc").__class__._pair_tasks

    def spy(self, data, pairs, seed):
        tasks = original(self, data, pairs, seed)
        seen.extend(len(t.images) for t in tasks)
        return tasks

    monkeypatch.setattr(get_scanner("nc").__class__, "_pair_tasks", spy)
    get_scanner("nc", victim_images=3, epochs=1, targets_per_victim=1).scan(trojaned, examples, seed=0)
    assert seen and set(seen) == {3}


def test_prior_pair_filter_uses_the_label_prior(area_models):
    clean, _, examples = area_models
    result = get_scanner("nc", targets_per_victim=1, epochs=5).scan(clean, examples, seed=0)
    pairs = result.diagnostics["pairs"]
    assert len(pairs) >= 6 and all(p["victim"] != p["target"] for p in pairs)
    assert "label_prior" in result.diagnostics


def test_cost_schedule_and_early_stop():
    inverter = NCInversion(epochs=100, batch_size=4, lr=0.1, patience=2, early_stop_patience=3)
    inverter.start([type("T", (), {"target": 1})()])
    params = {"mask": torch.full((1, 1, 2, 2), -10.0)}

    def epoch(success: bool):
        stats = EpochStats(
            0, torch.tensor([True]), {"pred": [torch.tensor([1 if success else 0] * 4)]}, params
        )
        return inverter.end_epoch(stats)

    improved, done = epoch(True)
    assert improved[0] and inverter.cost == [0.0]  # the first successful mask is the best so far
    epoch(True)  # patience successes: cost set to init_cost, flags cleared
    assert inverter.cost == [1e-3]
    epoch(True)
    improved, done = epoch(True)  # patience successes in a row: ×2
    assert inverter.cost == [2e-3] and inverter.up_flag == [True]
    assert not improved[0] and inverter.stop_counter[0] >= 3 and not done[0]  # no stop before a cost decrease
    epoch(False)
    improved, done = epoch(False)  # patience failures: ÷ 2^1.5, and now both flags are set
    assert inverter.cost[0] == pytest.approx(2e-3 / 2**1.5) and inverter.down_flag == [True]
    assert not done[0]  # as in the reference, the stop test runs before the cost update of an epoch
    improved, done = epoch(True)
    assert done[0]


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "both"},
        {"pairs": "all"},
        {"detection": "both"},
        {"victim_images": 0},
        {"betas": (0.5, 1.5)},
        {"cost_multiplier": 1.0},
        {"epochs": -1},
    ],
)
def test_invalid_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        get_scanner("nc", **options)
    with pytest.raises(ConfigError):
        get_scanner("nc_universal", mode="label_specific")


def test_the_scanner_layer_moves_the_label_prior_and_is_refused_where_unused(area_models):
    """NC inverts at the input; its one inner layer is the label prior's (pairs="prior"). A layer is
    honoured there (recorded in the result) and refused elsewhere, never silently ignored."""
    clean, _, examples = area_models
    scanner = get_scanner("nc", targets_per_victim=1, epochs=2)
    default = scanner.scan(clean, examples, seed=0)
    assert default.layer == default.diagnostics["prior_layer"] is not None
    layers = [n for n, m in clean.named_modules() if isinstance(m, torch.nn.Conv2d)]
    other = next(n for n in layers if n != default.layer)
    moved = scanner.scan(clean, examples, layer=other, seed=0)
    assert moved.layer == other
    for options in ({"mode": "universal"}, {"pairs": "short_run"}):
        with pytest.raises(ConfigError, match="inverts triggers at the input"):
            get_scanner("nc", **options).scan(clean, examples, layer=other, seed=0)
