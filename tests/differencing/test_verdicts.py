import json

import pytest
import torch

from exray import MaskConfig, Verdict, compare_trigger, compare_triggers, symmetric_mask
from exray.differencing import TriggerCase, derive_target
from exray.errors import ConfigError, InputError
from exray.models.analytic import CHANNEL

from .conftest import TARGET, VICTIM


def _compare(planted, stamped, **kwargs):
    arguments = dict(victim_label=VICTIM, target_label=TARGET) | kwargs
    return compare_trigger(
        planted["net"],
        victim=planted["victim"],
        target=planted["target"],
        stamped=planted[stamped],
        **arguments,
    )


def test_models_behave_as_constructed(planted, suppression):
    net = planted["net"]
    assert (net(planted["victim"]).argmax(1) == VICTIM).all()
    assert (net(planted["target"]).argmax(1) == TARGET).all()
    assert (net(planted["injected"]).argmax(1) == TARGET).all()
    assert (net(planted["natural"]).argmax(1) == TARGET).all()
    assert (suppression["net"](suppression["covered"]).argmax(1) == TARGET).all()


@pytest.mark.parametrize("policy", ["official", "paper", "r3"])
def test_injected_trigger_is_injected_with_m2_on_the_trigger_channel(planted, policy):
    verdict = _compare(planted, "injected", policy=policy)
    assert verdict.injected
    assert verdict.trigger_success == 1.0
    assert int(verdict.m2.argmax()) == CHANNEL["magenta"]
    assert verdict.m2[CHANNEL["magenta"]] > 0.5
    assert verdict.m2.sum() - verdict.m2[CHANNEL["magenta"]] < 0.05
    # M1 holds the V/T differences: the red and green detectors, nothing else
    assert verdict.m1[CHANNEL["red"]] > 0.3 and verdict.m1[CHANNEL["green"]] > 0.3
    assert verdict.m1[CHANNEL["magenta"]] < 0.05
    assert max(verdict.overlap) < 0.1
    assert max(verdict.cross_accuracy.values()) == 0.0


@pytest.mark.parametrize("policy", ["official", "exf_filter"])
def test_natural_trigger_is_natural_with_m2_inside_m1(planted, policy):
    verdict = _compare(planted, "natural", policy=policy)
    assert verdict.natural, verdict.summary()
    assert int(verdict.m2.argmax()) == CHANNEL["green"]
    assert verdict.m1[CHANNEL["green"]] > 0.3
    assert verdict.overlap[1] > 0.6  # M2 is mostly inside M1
    assert verdict.reasons


def test_paper_loss_form_separates_too(planted):
    config = MaskConfig(loss="paper")
    assert _compare(planted, "injected", config=config).injected
    assert _compare(planted, "natural", config=config).natural


def test_symmetric_mask_finds_suppressed_victim_features_that_one_sided_misses(suppression):
    """Paper §3.1 "Symmetry is necessary": V→T can happen by suppressing V's features. Copying T's
    channels into V (one-sided a_to_b) flips V most cheaply by *adding* green, and misses red; the
    symmetric mask must also flip T back to V, which needs red."""
    net, v, t = suppression["net"], suppression["victim"], suppression["target"]
    both = symmetric_mask(net, a=v, b=t, label_a=VICTIM, label_b=TARGET, sides="both")
    a_to_b = symmetric_mask(net, a=v, b=t, label_a=VICTIM, label_b=TARGET, sides="a_to_b")
    b_to_a = symmetric_mask(net, a=v, b=t, label_a=VICTIM, label_b=TARGET, sides="b_to_a")
    assert both.values[CHANNEL["red"]] > 0.8 and both.values[CHANNEL["green"]] > 0.8
    assert a_to_b.values[CHANNEL["red"]] < 0.2 and a_to_b.size < 0.5
    assert b_to_a.values[CHANNEL["red"]] > 0.8
    assert both.flip_accuracy == (1.0, 1.0)
    assert a_to_b.flip_accuracy[0] == 1.0 and a_to_b.flip_accuracy[1] < 1.0

    kwargs = dict(
        victim=v, target=t, stamped=suppression["covered"], victim_label=VICTIM, target_label=TARGET
    )
    symmetric = compare_trigger(net, **kwargs, sides="both", policy="paper")
    one_sided = compare_trigger(net, **kwargs, sides="a_to_b", policy="paper")
    assert symmetric.natural, symmetric.summary()
    assert one_sided.injected, one_sided.summary()  # the one-sided analysis calls a natural trigger injected


def _masks(verdicts):
    return [(v.m1, v.m2, v.natural, v.overlap, v.cross_accuracy) for v in verdicts]


def test_batched_equals_one_by_one(planted):
    net = planted["net"]
    cases = [
        TriggerCase(planted["victim"], planted["target"], planted["injected"], VICTIM, TARGET),
        TriggerCase(planted["victim"], planted["target"], planted["natural"], VICTIM, TARGET),
        # a different pair with unequal set sizes (a different number of mini-batches per epoch)
        TriggerCase(planted["target"][:7], planted["victim"], planted["target"][:7], TARGET, VICTIM),
    ]
    cases[2].stamped = cases[2].stamped.clone()
    cases[2].stamped[:, 0, 5:7, 5:7] = 1.0  # a red dot on green: T→V natural
    config = MaskConfig(epochs=150)
    together = compare_triggers(net, cases, config=config, seed=4)
    alone = [compare_triggers(net, [case], config=config, seed=4)[0] for case in cases]
    for (m1a, m2a, na, oa, ca), (m1b, m2b, nb, ob, cb) in zip(_masks(together), _masks(alone)):
        assert torch.allclose(m1a, m1b, atol=1e-5) and torch.allclose(m2a, m2b, atol=1e-5)
        assert na == nb and ca == cb
        assert oa == pytest.approx(ob, abs=1e-4)


def test_shared_m1_is_solved_once(planted, monkeypatch):
    import exray.differencing.compare as compare_module

    seen = []
    real = compare_module.optimize_masks

    def spy(cut, problems, config=None, progress=False):
        seen.append(len(problems))
        return real(cut, problems, config, progress=progress)

    monkeypatch.setattr(compare_module, "optimize_masks", spy)
    names = ("injected", "natural", "injected")
    cases = [
        TriggerCase(planted["victim"], planted["target"], planted[k].clone(), VICTIM, TARGET) for k in names
    ]
    verdicts = compare_triggers(planted["net"], cases, config=MaskConfig(epochs=5))
    assert seen == [3]  # one M1 for the shared (V, T) pair + two M2 (the repeated trigger is solved once)
    assert torch.equal(verdicts[0].m2, verdicts[2].m2)


def test_target_is_rederived_from_stamped_predictions(planted):
    verdict = _compare(planted, "injected", target_label=None, config=MaskConfig(epochs=20))
    assert verdict.target_label == TARGET and verdict.derived_target == TARGET
    assert derive_target(torch.tensor([0, 0, 0, 2, 2, 1]), 0) == 2
    assert derive_target(torch.tensor([0, 0]), 0) == -1
    with pytest.raises(InputError, match="no target to derive"):
        compare_trigger(
            planted["net"],
            victim=planted["victim"],
            target=planted["target"],
            stamped=planted["victim"],
            victim_label=VICTIM,
        )


def test_given_target_that_the_trigger_does_not_reach_is_noted(planted):
    verdict = _compare(planted, "injected", target_label=2, config=MaskConfig(epochs=5))
    assert verdict.trigger_success == 0.0
    assert any("mostly classified as 1" in note for note in verdict.notes)


def test_verdict_json_round_trip(planted):
    verdict = _compare(planted, "natural", config=MaskConfig(epochs=30))
    data = json.loads(verdict.to_json())
    assert set(data) >= {"natural", "m1", "m2", "overlap", "cross_accuracy", "policy", "reasons", "seed"}
    back = Verdict.from_dict(data)
    assert back.natural == verdict.natural and back.overlap == pytest.approx(verdict.overlap)
    assert torch.allclose(back.m1, verdict.m1, atol=1e-6)


def test_one_example_per_class_and_unequal_sizes_work(planted):
    verdict = compare_trigger(
        planted["net"],
        victim=planted["victim"][:1],
        target=planted["target"][:6],
        stamped=planted["injected"][:1],
        victim_label=VICTIM,
        target_label=TARGET,
    )
    assert verdict.injected


def test_early_stopping_keeps_the_verdict(planted):
    full = _compare(planted, "injected")
    early = _compare(planted, "injected", config=MaskConfig(patience=40))
    assert early.injected == full.injected
    assert int(early.m2.argmax()) == int(full.m2.argmax())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(victim=torch.rand(10, 3, 12)), "shape"),
        (dict(target=torch.rand(0, 3, 12, 12)), "non-empty"),
        (dict(stamped=torch.full((10, 3, 12, 12), float("nan"))), "NaN"),
        (dict(stamped=torch.rand(10, 3, 14, 14)), "different shapes"),
        (dict(victim_label=9), "victim_label"),
        (dict(target_label=VICTIM), "equal"),
    ],
)
def test_bad_inputs_are_clear_errors(planted, change, message):
    kwargs = dict(
        victim=planted["victim"],
        target=planted["target"],
        stamped=planted["injected"],
        victim_label=VICTIM,
        target_label=TARGET,
    )
    kwargs.update(change)
    with pytest.raises(InputError, match=message):
        compare_trigger(planted["net"], **kwargs, config=MaskConfig(epochs=2))


def test_images_the_model_cannot_take(planted):
    grey = torch.rand(4, 1, 12, 12)
    with pytest.raises(InputError, match="do not fit the model"):
        symmetric_mask(planted["net"], a=grey, b=grey, label_a=0, label_b=1)


def test_bad_configuration():
    with pytest.raises(ConfigError, match="loss"):
        MaskConfig(loss="hinge")
    with pytest.raises(ConfigError, match="epochs"):
        MaskConfig(epochs=0)
    with pytest.raises(ConfigError, match="sides"):
        symmetric_mask(None, a=None, b=None, label_a=0, label_b=1, sides="left")


@pytest.mark.parametrize("stamped", ["injected", "natural"])
def test_a_stored_verdict_redecided_under_another_policy_is_that_policys_verdict(planted, stamped):
    """The masks and cross-checks do not depend on the policy: re-deciding a stored verdict (JSON round
    trip included) gives what a run under the other policy computes, without optimising a mask."""
    from exray.differencing.policies import PaperPolicy, R3Policy, resolve_policy

    policies = {
        "r2": resolve_policy("r2"),
        "paper": resolve_policy("paper"),
        "always": PaperPolicy(beta=-1.0, cross_check=False, name="always"),  # every trigger natural
        "never": R3Policy(overlap=2.0, m1_acc=2.0, m2_acc=2.0, name="never"),  # none
    }
    config = MaskConfig(epochs=100)
    computed = {n: _compare(planted, stamped, policy=p, config=config) for n, p in policies.items()}
    assert computed["always"].natural and computed["never"].injected
    for source, verdict in computed.items():
        stored = Verdict.from_dict(json.loads(verdict.to_json()))
        for name, direct in computed.items():
            again = stored.under(policies[name])
            assert (again.natural, again.reasons, again.policy) == (direct.natural, direct.reasons, name)
            assert again.overlap == pytest.approx(direct.overlap, abs=1e-5)
            assert torch.equal(again.m1, stored.m1) and again.notes == direct.notes, (source, name)


def test_redeciding_a_verdict_with_a_degenerate_mask_keeps_or_drops_the_set_aside_note():
    """An all-ones M1 contains any M2: a rule that fires only through it is set aside (the trigger stays
    injected, with a note); re-decided under a policy where no rule fires, the note goes."""
    from exray.differencing.policies import PaperPolicy, R3Policy
    from exray.differencing.verdict import SET_ASIDE_NOTE

    m2 = torch.zeros(8)
    m2[:2] = 1.0
    accuracy = {"acc1_1": 0.0, "acc1_2": 0.0, "acc2_1": 1.0, "acc2_2": 1.0}
    base = dict(victim_label=0, target_label=1, derived_target=1, kind="patch", m1=torch.ones(8), m2=m2)
    undecided = Verdict(
        natural=False, **base, overlap=(0.0, 0.0), cross_accuracy=accuracy, policy="", reasons=[],
        sides="both", trigger_success=1.0, m1_flip_accuracy=(1.0, 1.0), m2_flip_accuracy=(1.0, 1.0),
        m1_feasible=True, m2_feasible=True, epochs_run=(1, 1), layer="x", seed=0,
        notes=["M1 is degenerate"], degenerate=(True, False),
    )  # fmt: skip
    kept = undecided.under(PaperPolicy())  # I2 = 1 only because M1 is all ones
    assert kept.injected and kept.overlap == pytest.approx((0.25, 1.0))
    assert [n for n in kept.notes if n.startswith(SET_ASIDE_NOTE)] and "M1 is degenerate" in kept.notes
    again = Verdict.from_dict(json.loads(kept.to_json())).under(R3Policy(overlap=2.0, m1_acc=2.0, m2_acc=2.0))
    assert again.injected and not [n for n in again.notes if n.startswith(SET_ASIDE_NOTE)]
    assert "M1 is degenerate" in again.notes and again.under(PaperPolicy()).notes == kept.notes
