"""Fidelity options to the official EX-RAY code (issue 16 §1): M1 index pairing, degenerate masks, the
round-2 rule on binarised masks, and mask coverage on every verdict."""

import json

import pytest
import torch
from torch import nn

from exray.differencing import MaskConfig, TriggerCase, Verdict, compare_triggers
from exray.differencing import compare as compare_module
from exray.differencing.compare import choose_layer
from exray.differencing.policies import ACCURACY_KEYS, R2Policy, R3Policy, resolve_policy
from exray.differencing.verdict import _set_aside_degenerate, decide, overlaps
from exray.errors import ConfigError, LayerError
from exray.models.analytic import CHANNEL, ColourDetectorNet, symbol_images

from .conftest import TARGET, VICTIM

# ---- the round-2 rule: overlaps of binarised masks ----


def test_binarised_overlaps_count_channels_above_the_cut():
    m1 = torch.tensor([0.95, 0.95, 0.10, 0.00])
    m2 = torch.tensor([0.95, 0.20, 0.95, 0.00])
    assert overlaps(m1, m2, binarize=0.9) == (0.5, 0.5)  # B1 = {0, 1}, B2 = {0, 2}
    assert overlaps(m1, torch.tensor([0.95, 0.0, 0.0, 0.0]), binarize=0.9) == (0.5, 1.0)
    assert overlaps(torch.zeros(4), m2, binarize=0.9) == (1.0, 0.0)  # an empty B1 gives I1 = 1
    soft = overlaps(m1, m2)
    assert soft == pytest.approx((1.25 / 2.0, 1.25 / 2.1))  # Σmin = 0.95 + 0.2 + 0.1


def test_r2_policy_is_r3_on_binarised_masks():
    policy = resolve_policy("r2")
    assert isinstance(policy, R2Policy) and policy.binarize == 0.9 and policy.name == "r2"
    acc = {"acc1_1": 0.5, "acc1_2": 0.5, "acc2_1": 0.5, "acc2_2": 0.5}
    for i1, i2 in ((0.95, 0.1), (0.1, 0.95), (0.5, 0.5)):
        assert policy.decide(i1, i2, acc) == R3Policy().decide(i1, i2, acc)


def test_r2_verdicts_use_binarised_overlaps(planted):
    case = TriggerCase(planted["victim"], planted["target"], planted["injected"], VICTIM, TARGET)
    config = MaskConfig(epochs=150)
    (verdict,) = compare_triggers(planted["net"], [case], policy="r2", config=config, seed=0)
    assert verdict.policy == "r2"
    assert verdict.overlap == overlaps(verdict.m1, verdict.m2, binarize=0.9)
    # On this hand-wired model the masks settle near 0.6-0.8 (one channel suffices at less than full
    # strength): no channel passes the 0.9 cut, both binarised masks are empty and the round-2 rule
    # gives I1 = I2 = 1, i.e. natural — as the submission would. The soft overlaps tell the trigger apart.
    assert (verdict.m1 <= 0.9).all() and (verdict.m2 <= 0.9).all()
    assert verdict.overlap == (1.0, 1.0) and verdict.natural
    (soft,) = compare_triggers(planted["net"], [case], policy="r3", config=config, seed=0)
    assert soft.injected and soft.overlap[0] < 0.1


# ---- M1 index pairing (the official script) ----


def test_index_pairing_pairs_victim_j_with_target_j(planted, monkeypatch):
    seen = []
    solve = compare_module.optimize_masks

    def spy(cut, problems, config, **kwargs):
        seen.extend(problems)
        return solve(cut, problems, config, **kwargs)

    monkeypatch.setattr(compare_module, "optimize_masks", spy)
    target = planted["target"][:6]  # fewer target images than victim images
    case = TriggerCase(planted["victim"], target, planted["injected"], VICTIM, TARGET)
    for pairing, paired, rows in (("random", False, (10, 6)), ("index", True, (6, 6))):
        for backend in ("fx", "hooks"):  # the hook backend also carries the input images of each pair
            seen.clear()
            config = MaskConfig(epochs=100, m1_pairing=pairing)
            (verdict,) = compare_triggers(planted["net"], [case], config=config, seed=0, backend=backend)
            m1 = seen[0]
            assert m1.paired is paired and (len(m1.a), len(m1.b)) == rows
            if backend == "hooks":
                assert (len(m1.inputs_a), len(m1.inputs_b)) == rows
                assert torch.equal(m1.inputs_b, target)
            first, second = m1.epoch_pairs(torch.Generator().manual_seed(0))
            assert torch.equal(first, second) is paired  # index pairing: one permutation for both
            assert verdict.injected, verdict.summary()
    with pytest.raises(ConfigError, match="m1_pairing"):
        MaskConfig(m1_pairing="shuffled")


# ---- degenerate masks ----


class _AllChannelsNeeded(nn.Module):
    """Two feature channels f0 = R, f1 = G + 4B (a 1×1 convolution, the layer ``features``), averaged;
    class 1's logit is f0 + f1, class 0's a constant 1.999. Victim = black (0, 0), target = yellow (1, 1):
    flipping the victim to the target needs *both* channels at full strength (1 + 1 > 1.999), so M1 can
    never drop a channel — a degenerate mask. The trigger (blue: f1 = 4) needs channel 1 alone."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1, bias=False)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 4.0]])[:, :, None, None])
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
            self.head.bias.copy_(torch.tensor([1.999, 0.0]))
        self.eval()

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _solid(rgb, n=8, size=4):
    return torch.tensor(rgb, dtype=torch.float32)[None, :, None, None].expand(n, 3, size, size).clone()


def test_a_degenerate_mask_is_reported_and_never_by_itself_makes_a_trigger_natural():
    net = _AllChannelsNeeded()
    victim, target, stamped = _solid((0, 0, 0)), _solid((1, 1, 0)), _solid((0, 0, 1))
    assert net(victim).argmax(1).eq(0).all() and net(target).argmax(1).eq(1).all()
    assert net(stamped).argmax(1).eq(1).all()
    case = TriggerCase(victim, target, stamped, 0, 1)
    (verdict,) = compare_triggers(net, [case], layer="features", config=MaskConfig(epochs=80), seed=0)
    assert verdict.degenerate == (True, False), verdict.summary()
    assert (verdict.m1 > 0.9).all() and verdict.m2[0] < 0.1  # M2 = the trigger's channel only
    # M2 lies inside the all-ones M1, so I2 ≈ 1 and the official rule would call it natural ...
    assert verdict.overlap[1] > 0.99
    # ... but a degenerate M1 is no evidence: the trigger is kept, and the notes say why.
    assert not verdict.natural and verdict.reasons == []
    assert any("degenerate" in note for note in verdict.notes), verdict.notes
    assert verdict.coverage[0] == pytest.approx(verdict.m1_size / 2)


def test_coverage_and_degenerate_are_on_every_verdict_and_round_trip(planted):
    case = TriggerCase(planted["victim"], planted["target"], planted["natural"], VICTIM, TARGET)
    (verdict,) = compare_triggers(planted["net"], [case], config=MaskConfig(epochs=150), seed=0)
    channels = verdict.m1.numel()
    assert verdict.coverage == pytest.approx((verdict.m1_size / channels, verdict.m2_size / channels))
    assert verdict.degenerate == (False, False)
    data = json.loads(verdict.to_json())
    assert data["coverage"] == list(verdict.coverage) and data["degenerate"] == [False, False]
    again = Verdict.from_dict(data)
    assert again.coverage == pytest.approx(verdict.coverage) and again.degenerate == (False, False)
    del data["coverage"], data["degenerate"]  # records written before these fields existed still load
    assert Verdict.from_dict(data).degenerate == (False, False)


# ---- beyond the paper: entangled layers and layer="auto" ----


class _Entangled(nn.Module):
    """Two classes, red symbol (0) and green symbol (1), through three 1×1 blocks: ``detectors`` (the 8
    colour detectors of :class:`ColourDetectorNet`), ``mix`` (16 channels, each = red − green) and
    ``unmix`` (logit 0 = mean of ``mix``, logit 1 = −mean − 0.4), then spatial max pooling.

    At ``mix`` every channel carries both classes' evidence: swapping a share m̄ of them from a green
    image into a red one gives logits (1 − m̄, m̄ − 0.4), so the clean-pair mask M1 must cover more than
    70 % of the layer — entangled by construction. At ``detectors`` the same flip needs the red and green
    channels only (m_red + m_green > 1.4 of 8 channels, under 25 %)."""

    def __init__(self):
        super().__init__()
        self.detectors = ColourDetectorNet([{"red": 1}, {"green": 1}]).detectors
        self.mix, self.unmix = nn.Conv2d(8, 16, 1, bias=False), nn.Conv2d(16, 2, 1)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, CHANNEL["red"]] = 1.0
            self.mix.weight[:, CHANNEL["green"]] = -1.0
            self.unmix.weight.copy_(
                torch.stack([torch.full((16,), 1 / 16), torch.full((16,), -1 / 16)])[..., None, None]
            )
            self.unmix.bias.copy_(torch.tensor([0.0, -0.4]))
        self.eval()

    def forward(self, x):
        return self.unmix(self.mix(self.detectors(x))).amax((2, 3))


def test_an_entangled_layer_is_flagged_and_auto_picks_the_disentangled_one():
    net = _Entangled()
    red, green = symbol_images("red", 10, seed=1), symbol_images("green", 10, seed=2)
    assert net(red).argmax(1).eq(0).all() and net(green).argmax(1).eq(1).all()
    # a natural trigger by construction: the "stamped" victims are other green-class images
    case = TriggerCase(red, green, symbol_images("green", 10, seed=3), 0, 1)
    config = MaskConfig(epochs=200)
    (at_mix,) = compare_triggers(net, [case], layer="mix", config=config, seed=0)
    (at_detectors,) = compare_triggers(net, [case], layer="detectors", config=config, seed=0)
    assert at_mix.entangled and at_mix.coverage[0] > 0.7 - 0.05, at_mix.summary()
    assert not at_detectors.entangled and at_detectors.coverage[0] < 0.25, at_detectors.summary()
    assert "entangled" in at_mix.summary() and json.loads(at_mix.to_json())["entangled"] is True

    layer, shares = choose_layer(net, [case], config=config, seed=0)
    assert list(shares) == ["detectors", "mix"]  # every block but the last (unmix)
    assert layer == "detectors" and shares["detectors"] < shares["mix"]
    (auto,) = compare_triggers(net, [case], layer="auto", config=config, seed=0)
    assert auto.layer == "detectors" and auto.natural and not auto.entangled
    assert any("chosen by auto" in note for note in auto.notes), auto.notes


def test_layer_auto_reuses_the_chosen_layers_m1_instead_of_solving_it_again(monkeypatch):
    """choose_layer solves M1 at every candidate; compare_triggers then needs only M2 at the chosen one,
    and its M1 is the mask the choice measured."""
    net = _Entangled()
    red, green = symbol_images("red", 10, seed=1), symbol_images("green", 10, seed=2)
    case = TriggerCase(red, green, symbol_images("green", 10, seed=3), 0, 1)
    config = MaskConfig(epochs=100)
    solved: list[tuple[str, int]] = []  # (layer, problems) of every optimize_masks call
    real = compare_module.optimize_masks

    def counting(cut, problems, config, **kwargs):
        solved.append((cut.layer, len(problems)))
        return real(cut, problems, config, **kwargs)

    monkeypatch.setattr(compare_module, "optimize_masks", counting)
    (auto,) = compare_triggers(net, [case], layer="auto", config=config, seed=0)
    assert solved == [("detectors", 1), ("mix", 1), ("detectors", 1)]  # M1 per candidate, then M2 only
    _, shares = choose_layer(net, [case], config=config, seed=0)
    assert auto.coverage[0] == pytest.approx(shares["detectors"])  # the choice's own M1


def test_only_the_terms_a_degenerate_mask_makes_true_are_set_aside():
    """An all-ones M1 makes I2 and the M1 cross-checks (acc2_*) true by construction, an all-ones M2 I1
    and acc1_*: those are zeroed, the rest still decides — so a natural verdict that other evidence
    supports survives a degenerate partner mask."""
    acc = dict.fromkeys(ACCURACY_KEYS, 0.9)
    i1, i2, rest = _set_aside_degenerate(0.99, 0.85, acc, (False, True))  # M2 degenerate
    assert (i1, i2) == (0.0, 0.85) and rest == {"acc1_1": 0.0, "acc1_2": 0.0, "acc2_1": 0.9, "acc2_2": 0.9}
    assert resolve_policy("exf_mask").decide(i1, i2, rest) == (True, ["I2 > 0.8"])  # M1 covers M2's evidence
    i1, i2, rest = _set_aside_degenerate(0.3, 0.99, acc, (True, False))  # M1 degenerate
    assert (i1, i2) == (0.3, 0.0) and rest["acc2_1"] == rest["acc2_2"] == 0.0 and rest["acc1_1"] == 0.9
    assert resolve_policy("exf_mask").decide(i1, i2, rest)[0] is False
    assert acc == dict.fromkeys(ACCURACY_KEYS, 0.9)  # the caller's accuracies are not modified


def test_decide_redecides_a_verdict_under_any_policy_as_compare_triggers_does():
    """decide() is the rule compare_triggers applies: an all-ones M1 (degenerate) contains M2, and the
    natural verdict that gives is reversed; with honest masks the policy's own answer stands; r2 decides
    on the masks binarised at 0.9."""
    acc = dict.fromkeys(ACCURACY_KEYS, 0.0)
    ones, small = torch.ones(8), torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0, 0])
    policy = resolve_policy("paper")
    assert decide(policy, ones, small, acc) == (True, ["max(I1, I2) > beta=0.8"], "")
    natural, _, set_aside = decide(policy, ones, small, acc, (True, False))
    assert natural is False and set_aside == "max(I1, I2) > beta=0.8"
    other = torch.tensor([0, 0, 0, 0, 0, 0, 1.0, 1.0])
    assert decide(policy, small, other, acc)[0] is False
    r2 = resolve_policy("r2")
    soft = torch.tensor([0.95, 0.95, 0.5, 0.5, 0, 0, 0, 0])  # binarised: channels 0 and 1 only
    assert overlaps(soft, small, 0.9) == (1.0, 1.0) and decide(r2, soft, small, acc)[0] is True


def test_layer_auto_is_refused_with_a_clear_error_where_it_cannot_apply(planted):
    from exray.evaluation import EvaluationConfig
    from exray.models.layers import resolve_layer

    with pytest.raises(LayerError, match="chosen per call by EX-RAY"):
        resolve_layer(planted["net"], "auto", planted["victim"][:1])
    with pytest.raises(ConfigError, match="one layer"):
        EvaluationConfig(layer="auto")
    assert EvaluationConfig(layer="auto", methods=("exray", "exray_v2t")).layer == "auto"  # EX-RAY rows only
