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


def test_one_loader_gives_exray_scan_and_exray_trojai_the_same_cropped_examples(tmp_path):
    """pipeline.load_scan_inputs (issue 21 §2): the examples of the model directory, or of a separate folder
    (TrojAI's layout), cropped by the rule above — a pickled model that states no size gets 224×224 from
    256×256 examples, as `exray trojai` always did and `exray scan` now does too."""
    import torch

    from exray.data.images import write_image
    from exray.pipeline.loading import load_scan_inputs

    def write_examples(folder, side):
        folder.mkdir(parents=True)
        for label in range(2):
            for k in range(2):
                write_image(folder / f"class_{label}_example_{k}.png", torch.rand(3, side, side))

    save_model(build_model("cnn", 2, width=0.25), tmp_path / "m", input_size=(3, 20, 24))
    write_examples(tmp_path / "m" / "clean-example-data", 32)
    _, examples = load_scan_inputs(tmp_path / "m")
    assert examples[0].shape[-2:] == (20, 24) and sorted(examples) == [0, 1]
    torch.save(build_model("cnn", 2, width=0.25), tmp_path / "pickled.pt")
    write_examples(tmp_path / "trojai-examples", 256)
    _, examples = load_scan_inputs(tmp_path / "pickled.pt", tmp_path / "trojai-examples", trust_pickle=True)
    assert examples[1].shape[-2:] == (224, 224)
