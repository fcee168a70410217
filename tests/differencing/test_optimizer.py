import pytest
import torch

from exray import MaskConfig, symmetric_mask
from exray.differencing import MaskProblem, TriggerCase, compare_triggers, optimize_masks, resolve_precision
from exray.differencing import config as config_module
from exray.differencing.reference import reference_mask
from exray.errors import ConfigError
from exray.models import LayerCut, build_model, default_layer, list_architectures

from .conftest import TARGET, VICTIM


@pytest.fixture(scope="module")
def narrow_resnet():
    torch.manual_seed(0)
    model = build_model("resnet18", 5, width=0.125)
    images = torch.rand(30, 3, 32, 32)
    cut = LayerCut(model, default_layer(model, images))
    return cut, cut.features(images)


def test_matches_the_official_reference_loop_on_the_planted_model(planted):
    cut = LayerCut(planted["net"], "detectors")
    problem = MaskProblem(
        cut.features(planted["victim"]),
        cut.features(planted["injected"]),
        VICTIM,
        TARGET,
        paired=True,
        seed=7,
    )
    ours = optimize_masks(cut, [problem])[0]
    assert torch.allclose(ours.values, reference_mask(cut, problem, MaskConfig()).values, atol=1e-4)
    assert ours.feasible and ours.epochs_run == 400 and len(ours.history) == 400


def test_matches_the_official_reference_loop_on_a_resnet(narrow_resnet):
    cut, feats = narrow_resnet
    problem = MaskProblem(feats[:13], feats[13:26], 0, 1, paired=True, seed=3)
    config = MaskConfig(epochs=25)
    ours = optimize_masks(cut, [problem], config)[0]
    assert torch.allclose(ours.values, reference_mask(cut, problem, config).values, atol=1e-4)


def test_stacked_problems_equal_solo_problems_on_a_resnet(narrow_resnet):
    cut, feats = narrow_resnet
    problems = [
        MaskProblem(feats[:10], feats[10:20], 0, 1, paired=True, seed=1),
        MaskProblem(feats[:4], feats[20:30], 2, 3, seed=2),  # unpaired, unequal sizes
        MaskProblem(feats[5:28], feats[:23], 1, 4, sides="a_to_b", seed=3),  # three mini-batches per epoch
        MaskProblem(feats[2:9], feats[9:16], 4, 0, sides="b_to_a", paired=True, seed=4),
    ]
    config = MaskConfig(epochs=20)
    stacked = optimize_masks(cut, problems, config)
    for problem, together in zip(problems, stacked):
        alone = optimize_masks(cut, [problem], config)[0]
        assert torch.allclose(together.values, alone.values, atol=1e-4)
        assert together.flip_accuracy == alone.flip_accuracy


def test_runs_are_deterministic_and_pairings_follow_the_seed(narrow_resnet):
    cut, feats = narrow_resnet
    problem = MaskProblem(feats[:10], feats[10:25], 0, 1, seed=11)
    config = MaskConfig(epochs=10)
    first = optimize_masks(cut, [problem], config)[0].values
    assert torch.equal(first, optimize_masks(cut, [problem], config)[0].values)

    def pairs(seed, paired=False):
        gen = torch.Generator().manual_seed(seed)
        p = MaskProblem(feats[:10], feats[10:20], 0, 1, seed=seed, paired=paired)
        return [torch.stack(p.epoch_pairs(gen)) for _ in range(3)]

    assert all(torch.equal(x, y) for x, y in zip(pairs(1), pairs(1)))
    assert not all(torch.equal(x, y) for x, y in zip(pairs(1), pairs(2)))
    # random pairing changes partners between epochs; one-to-one pairing never does
    unpaired = [dict(zip(ia.tolist(), ib.tolist())) for ia, ib in pairs(1)]
    assert unpaired[0] != unpaired[1]
    assert all(torch.equal(ia, ib) for ia, ib in pairs(1, paired=True))


@pytest.mark.parametrize("name", list_architectures())
def test_every_architecture_runs_mask_optimisation_at_its_default_layer(name):
    torch.manual_seed(0)
    model = build_model(name, 4, width=0.125)
    a, b = torch.rand(6, 3, 32, 32), torch.rand(6, 3, 32, 32)
    mask = symmetric_mask(model, a=a, b=b, label_a=0, label_b=1, config=MaskConfig(epochs=3))
    cut = LayerCut(model, default_layer(model, a))
    assert mask.values.shape == (cut.features(a[:1]).shape[1],)
    assert ((mask.values >= 0) & (mask.values <= 1)).all()
    assert all(0.0 <= acc <= 1.0 for acc in mask.flip_accuracy)


@pytest.mark.parametrize("sides", ["both", "a_to_b"])
def test_reference_engine_gives_the_same_verdicts(planted, sides):
    cases = [
        TriggerCase(planted["victim"], planted["target"], planted[name], VICTIM, TARGET)
        for name in ("injected", "natural")
    ]
    batched = compare_triggers(planted["net"], cases, sides=sides, config=MaskConfig(epochs=200))
    reference = compare_triggers(
        planted["net"], cases, sides=sides, config=MaskConfig(epochs=200, engine="reference")
    )
    for ours, theirs in zip(batched, reference):
        assert ours.natural == theirs.natural
        assert torch.allclose(ours.m1, theirs.m1, atol=1e-4)
        assert torch.allclose(ours.m2, theirs.m2, atol=1e-4)


def test_reference_engine_rejects_what_it_does_not_implement():
    with pytest.raises(ConfigError, match="reference engine"):
        MaskConfig(engine="reference", loss="paper")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])  # fp16: GPUs without bfloat16 (runs on a CPU too)
def test_reduced_precision_gives_the_same_verdicts(planted, precision, monkeypatch):
    cases = [
        TriggerCase(planted["victim"], planted["target"], planted[name], VICTIM, TARGET)
        for name in ("injected", "natural")
    ]
    seen = []
    autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        seen.append((dtype, enabled))
        return autocast(device_type, dtype, enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    fast = compare_triggers(planted["net"], cases, config=MaskConfig(precision=precision))
    assert (getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[precision]), True) in seen
    assert [v.natural for v in fast] == [False, True]
    assert int(fast[0].m2.argmax()) != int(fast[1].m2.argmax())


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_exactly_where_the_device_computes_it_natively(native, monkeypatch):
    monkeypatch.setattr(config_module, "native_bf16", lambda device: native)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    for fixed in ("fp32", "bf16", "fp16"):  # a named precision is never second-guessed
        assert resolve_precision(fixed, "cpu") == fixed
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("bf8", "cpu")
    with pytest.raises(ConfigError, match="precision"):
        MaskConfig(precision="auto")  # type: ignore[arg-type]  # a MaskConfig holds what runs
