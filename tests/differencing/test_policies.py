import pytest

from exray.differencing.policies import EXF_FILTER, EXF_MASK, PaperPolicy, R3Policy, resolve_policy
from exray.errors import ConfigError

LOW = dict(acc1_1=0.0, acc1_2=0.0, acc2_1=0.0, acc2_2=0.0)
HIGH = dict(acc1_1=0.95, acc1_2=0.95, acc2_1=0.95, acc2_2=0.95)


@pytest.mark.parametrize(
    ("i1", "i2", "acc", "natural"),
    [
        (0.81, 0.1, LOW, True),  # eq. (5) through I1
        (0.1, 0.81, LOW, True),  # eq. (5) through I2
        (0.79, 0.79, LOW, False),
        (0.1, 0.1, HIGH, True),  # eq. (6): all four cross-checks pass
        (0.1, 0.1, HIGH | {"acc2_2": 0.8}, False),  # "exceed" γ: 0.8 is not enough
    ],
)
def test_paper_rule(i1, i2, acc, natural):
    assert PaperPolicy().decide(i1, i2, acc)[0] is natural


def test_paper_rule_without_cross_check():
    assert PaperPolicy(cross_check=False).decide(0.1, 0.1, HIGH)[0] is False


@pytest.mark.parametrize(
    ("i1", "i2", "acc", "natural", "rule"),
    [
        (0.85, 0.2, LOW, True, "I1 > 0.8"),
        (0.5, 0.4, LOW | {"acc2_2": 0.8}, True, "I1 > I2 and M1 flips"),
        (0.4, 0.5, LOW | {"acc2_2": 0.8}, False, None),  # the M1 cross-check only counts when I1 > I2
        (0.2, 0.85, LOW, True, "I2 > 0.8"),
        (0.4, 0.5, LOW | {"acc1_1": 0.8}, True, "I2 > I1 and M2 flips"),
        (0.1, 0.1, LOW | {"acc1_1": 0.8, "acc1_2": 0.8, "acc2_1": 0.8}, True, "3 of 4"),
        (0.1, 0.1, dict(acc1_1=0.4, acc1_2=0.4, acc2_1=0.4, acc2_2=0.4), True, "all cross-check"),
        (0.1, 0.1, dict(acc1_1=0.39, acc1_2=0.4, acc2_1=0.4, acc2_2=0.4), False, None),
    ],
)
def test_official_mask_rules(i1, i2, acc, natural, rule):
    decided, reasons = EXF_MASK.decide(i1, i2, acc)
    assert decided is natural
    if rule:
        assert any(rule in r for r in reasons)
    else:
        assert reasons == []


@pytest.mark.parametrize(
    ("i1", "i2", "acc", "natural"),
    [
        (0.85, 0.2, LOW, False),  # the filter variant is stricter on I1 …
        (0.91, 0.2, LOW, True),
        (0.2, 0.87, LOW, False),  # … and on I2
        (0.2, 0.89, LOW, True),
        (0.5, 0.4, LOW | {"acc2_1": 0.98}, False),
        (0.5, 0.4, LOW | {"acc2_1": 0.99}, True),
        (0.61, 0.61, LOW, True),  # both overlaps moderately high
        (0.1, 0.84, HIGH, False),  # 3 of 4 accuracies ≥ 0.9 needs I2 > 0.85 too
        (0.1, 0.86, HIGH, True),
        (0.1, 0.1, dict(acc1_1=0.5, acc1_2=0.5, acc2_1=0.5, acc2_2=0.5), False),  # no all-≥0.4 rule
    ],
)
def test_official_filter_rules(i1, i2, acc, natural):
    assert EXF_FILTER.decide(i1, i2, acc)[0] is natural


def test_r3_rule_needs_both_cross_accuracies():
    assert R3Policy().decide(0.5, 0.4, dict(acc1_1=0, acc1_2=0, acc2_1=0.96, acc2_2=0.5))[0] is False
    assert R3Policy().decide(0.5, 0.4, dict(acc1_1=0, acc1_2=0, acc2_1=0.96, acc2_2=0.96))[0] is True


def test_resolve_policy():
    assert resolve_policy("official", "patch") is EXF_MASK
    assert resolve_policy("official", "filter") is EXF_FILTER
    assert resolve_policy("paper").name == "paper"
    custom = PaperPolicy(beta=0.5, name="loose")
    assert resolve_policy(custom) is custom
    with pytest.raises(ConfigError, match="unknown policy"):
        resolve_policy("lenient")
    with pytest.raises(ConfigError, match="decide"):
        resolve_policy(object())
