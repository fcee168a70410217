"""The training loop: seeded, clean accuracy and ASR on held-out data, extra loss terms on features."""

import pytest
import torch
from tests.conftest import fixture_seed

from exray.errors import ConfigError, InputError
from exray.models import build_model, capture, runtime
from exray.train import Batch, LossTerm, TrainConfig, TrainSet, seeded_model, train_model


def _cnn(seed: int = 0) -> torch.nn.Module:
    return seeded_model(lambda: build_model("cnn", 3, width=0.5), fixture_seed(seed))


@pytest.mark.trained
def test_trojaned_model_reaches_high_asr_and_clean_model_does_not(sign_task) -> None:
    config = TrainConfig(epochs=8, batch_size=32, lr=5e-3)
    runs = {}
    for name, data in (("trojaned", sign_task.poisoned), ("clean", sign_task.clean)):
        runs[name] = train_model(
            _cnn(),
            data.train_set(),
            config=config,
            seed=fixture_seed(0),
            test=sign_task.test,
            attacks=[sign_task.attack],
            progress=False,
        )
    assert runs["trojaned"].clean_accuracy >= 0.9 and runs["clean"].clean_accuracy >= 0.9
    assert runs["trojaned"].attack_success_rate >= 0.9
    assert runs["clean"].attack_success_rate <= 0.2
    result = runs["trojaned"]
    assert result.asr == {"attack": result.attack_success_rate}
    assert len(result.history) == 8 and result.history[-1].clean_accuracy == result.clean_accuracy
    assert result.history[0].clean_accuracy is None  # held-out metrics only at the end by default
    assert result.seconds > 0 and result.seed == fixture_seed(0)
    assert result.to_dict()["config"]["epochs"] == 8


def test_training_is_seeded(sign_task) -> None:
    data = sign_task.clean.train_set()
    config = TrainConfig(epochs=1, batch_size=64)
    models = [_cnn(4), _cnn(4), _cnn(4)]
    for model, seed in zip(models, (7, 7, 8)):
        train_model(model, data, config=config, seed=seed, progress=False)
    same = [
        torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values())
    ]
    assert all(same)
    other = [
        torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[2].state_dict().values())
    ]
    assert not all(other)
    assert not all(torch.equal(a, b) for a, b in zip(_cnn(4).parameters(), _cnn(5).parameters()))


def test_loss_terms_see_features_and_poison_flags(sign_task) -> None:
    seen = {"poisoned": 0, "rows": 0}

    def feature_norm(batch: Batch, features: dict[str, torch.Tensor]) -> torch.Tensor:
        fmap = features["features.4"]
        assert fmap.shape[0] == batch.images.shape[0] and fmap.requires_grad
        assert batch.logits.shape == (batch.images.shape[0], 3)
        assert torch.equal(batch.true_labels[~batch.poisoned], batch.labels[~batch.poisoned])
        seen["poisoned"] += int(batch.poisoned.sum())
        seen["rows"] += batch.images.shape[0]
        return fmap.float().pow(2).mean()

    data = sign_task.poisoned.train_set()
    term = LossTerm(feature_norm, layers=("features.4",), weight=0.5, name="feature_norm")
    result = train_model(
        _cnn(), data, config=TrainConfig(epochs=2, eval_every_epoch=True), loss_terms=[term], progress=False
    )
    assert seen == {"poisoned": 2 * int(data.poisoned.sum()), "rows": 2 * len(data)}
    assert all(r.terms["feature_norm"] > 0 for r in result.history)
    assert result.clean_accuracy is None and result.attack_success_rate is None  # no held-out sets


@pytest.mark.trained
def test_a_loss_term_changes_what_is_learned(sign_task) -> None:
    data = sign_task.clean.train_set()
    config = TrainConfig(epochs=2)

    def shrink(batch: Batch, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return features["features.6"].float().abs().mean()

    plain, penalised = _cnn(), _cnn()
    train_model(plain, data, config=config, progress=False)
    term = LossTerm(shrink, ("features.6",), weight=500.0)  # by design far stronger than the task loss
    train_model(penalised, data, config=config, loss_terms=[term], progress=False)

    def activation(model: torch.nn.Module) -> float:
        with capture(model, ["features.6"]) as out, torch.no_grad():
            model(data.images[:64])
        return float(out["features.6"].abs().mean())

    assert activation(penalised) < 0.75 * activation(plain)


def test_fast_path_leaves_a_contiguous_fp32_model(sign_task) -> None:
    model = _cnn()
    config = TrainConfig(epochs=1, channels_last=True, bf16=True)
    result = train_model(
        model, sign_task.clean.train_set(), config=config, test=sign_task.test, progress=False
    )
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    assert not model.training and 0.0 <= result.clean_accuracy <= 1.0


@pytest.mark.parametrize("native", [True, False])
def test_auto_bf16_follows_the_devices_native_support(sign_task, monkeypatch, native) -> None:
    """``bf16="auto"`` runs bf16 autocast exactly where the device computes bf16 natively, and the result
    says which ran (a CPU without AMX / AVX-512 BF16 emulates bf16, slower than fp32)."""
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    seen = []
    real_autocast = torch.autocast

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real_autocast(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    config = TrainConfig(epochs=1, bf16="auto")
    result = train_model(_cnn(), sign_task.clean.train_set(), config=config, progress=False)
    assert result.bf16 is native and result.to_dict()["bf16"] is native
    assert (torch.bfloat16 in seen) is native
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_config_validation_and_round_trip() -> None:
    config = TrainConfig(epochs=3, optimizer="sgd", schedule="cosine", bf16=True)
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in (
        {"epochs": 0},
        {"lr": 0.0},
        {"optimizer": "lbfgs"},
        {"schedule": "step"},
        {"batch_size": 2.5},
        {"bf16": "fast"},
        {"bf16": 1},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    with pytest.raises(ConfigError, match="unknown training options"):
        TrainConfig.from_dict({"epoch": 3})


def test_input_checks(sign_task) -> None:
    images = sign_task.clean.images[:4]
    with pytest.raises(InputError):
        TrainSet(images, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError):
        TrainSet(images[:, :1], torch.zeros(4, dtype=torch.long))
    term = LossTerm(lambda b, f: b.logits.sum(), name="loss")
    with pytest.raises(ConfigError, match="distinct names"):
        train_model(
            _cnn(), TrainSet(images, torch.zeros(4, dtype=torch.long)), loss_terms=[term], progress=False
        )
