"""Round-3 adversarial training (spec §7.2): PGD/FBF step sizes, eps-bounded perturbations, batch ratio."""

import pytest
import torch
from tests.conftest import fixture_seed

from exray.errors import ConfigError
from exray.models import build_model
from exray.train import AdversarialConfig, Batch, LossTerm, TrainConfig, perturb, seeded_model, train_model
from exray.utils import torch_generator


def test_step_sizes_follow_trojai() -> None:
    assert AdversarialConfig("pgd", eps=8 / 255, iterations=3).step_size == pytest.approx(2 * 8 / 255 / 3)
    assert AdversarialConfig("pgd", eps=4 / 255, iterations=1).step_size == pytest.approx(8 / 255)
    assert AdversarialConfig("fbf", eps=16 / 255, iterations=1).step_size == pytest.approx(1.2 * 16 / 255)
    with pytest.raises(ConfigError, match="FBF"):
        AdversarialConfig("fbf", iterations=3)
    for bad in ({"method": "cw"}, {"eps": 0.0}, {"ratio": 1.5}, {"iterations": 0}):
        with pytest.raises(ConfigError):
            AdversarialConfig(**bad)
    config = AdversarialConfig("pgd", eps=16 / 255, ratio=0.1, iterations=7)
    assert AdversarialConfig.from_dict(config.to_dict()) == config


@pytest.mark.trained
@pytest.mark.parametrize(
    "config",
    [AdversarialConfig("pgd", 4 / 255, 0.3, 7), AdversarialConfig("fbf", 16 / 255, 0.1, 1)],
    ids=["pgd", "fbf"],
)
def test_perturbations_stay_within_eps_and_raise_the_loss(sign_task, config) -> None:
    model = seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(0))
    train_model(
        model, sign_task.clean.train_set(), config=TrainConfig(epochs=3), seed=fixture_seed(0), progress=False
    )
    x, y = sign_task.test.images[:64], sign_task.test.labels[:64]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    adv = perturb(model.eval(), x, y, config, torch_generator(fixture_seed(0)))
    assert (adv - x).abs().max() <= config.eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert not adv.requires_grad and all(p.requires_grad for p in model.parameters())
    after = [p.grad for p in model.parameters()]
    assert all(
        (a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, after)
    )  # weights untouched
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(model(adv), y) > loss(model(x), y)


def test_adversarial_training_replaces_the_batch_ratio(sign_task) -> None:
    ratios = []

    def record(batch: Batch, features: dict) -> torch.Tensor:
        ratios.append(float(batch.adversarial.float().mean()))
        return batch.logits.new_zeros(())

    adversarial = AdversarialConfig("pgd", eps=8 / 255, ratio=0.3, iterations=3)
    config = TrainConfig(epochs=1, batch_size=50, adversarial=adversarial, bf16=True, channels_last=True)
    model = seeded_model(lambda: build_model("cnn", 3, width=0.5), 0)
    result = train_model(
        model, sign_task.clean.train_set(), config=config, loss_terms=[LossTerm(record)], progress=False
    )
    assert ratios == [pytest.approx(0.3)] * len(ratios) and len(ratios) == 6
    assert result.to_dict()["config"]["adversarial"] == adversarial.to_dict()
