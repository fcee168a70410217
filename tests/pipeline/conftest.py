"""Hand-wired colour-detector models (registered as ``colour_detectors``) with known triggers.

Class c's symbol colour is SYMBOLS[c]; a small patch of green (class 1's own feature, weight 2.5 against 2)
flips any other class to 1 — a *natural* trigger in every model. The "planted" model also wires a magenta
detector to class 1: a magenta patch is an *injected* trigger.
"""

import pytest

from exray.data.images import write_image
from exray.models import build_model
from exray.models.analytic import symbol_images
from exray.models.io import save_model

SYMBOLS = ("red", "green", "blue", "yellow")
BIAS = [0, 0.1, 0.05, 0.05]
CLEAN_VOTES = [{"red": 2}, {"green": 2.5}, {"blue": 2}, {"yellow": 2}]
PLANTED_VOTES = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}, {"yellow": 2}]


def examples(n=10, size=16):
    return {c: symbol_images(colour, n, size=size, seed=c) for c, colour in enumerate(SYMBOLS)}


def colour_model(planted: bool):
    return build_model("colour_detectors", 4, votes=PLANTED_VOTES if planted else CLEAN_VOTES, bias=BIAS)


def write_model_dir(path, planted: bool, n=10, size=16):
    save_model(colour_model(planted), path, input_size=(3, size, size), metadata={"poisoned": planted})
    (path / "clean-example-data").mkdir()
    for label, images in examples(n, size).items():
        for k, image in enumerate(images):
            write_image(path / "clean-example-data" / f"class_{label}_example_{k}.png", image)
    return path


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    return {
        "clean": write_model_dir(root / "id-00000000", planted=False),
        "planted": write_model_dir(root / "id-00000001", planted=True),
    }
