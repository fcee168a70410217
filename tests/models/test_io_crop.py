"""TrojAI's crop rule (spec §1): a model directory's stated input size wins; 256×256 examples of a model
that states none are cropped to TrojAI's 224×224; anything else is used as it is."""

from torch import nn

from exray.models import build_model
from exray.models.io import example_crop_size, load_model, save_model


def test_the_stated_input_size_wins_then_trojai_s_224_for_256_examples(tmp_path):
    save_model(build_model("cnn", 3, width=0.25), tmp_path / "m", input_size=(3, 20, 24))
    stated = load_model(tmp_path / "m")
    assert example_crop_size(stated, 256) == (20, 24)
    bare = nn.Linear(2, 2)  # a pickled TrojAI model says nothing about its input
    assert example_crop_size(bare, 256) == (224, 224)
    assert example_crop_size(bare, 32) is None
