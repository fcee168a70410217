"""A small labelled population of hand-wired colour-detector models (fast to scan and refine).

Every model has the natural trigger "a green patch flips any class to 1" (class 1's own feature). The
trojaned models also wire a magenta detector to class 1 (the injected trigger); their ground truth names
a polygon trigger for one and an Instagram filter for the other, so that the table has the paper's
polygon and filter groups.
"""

import json

import pytest

from exray.data.images import write_image
from exray.differencing import MaskConfig
from exray.evaluation import EvaluationConfig
from exray.models import build_model
from exray.models.analytic import symbol_images
from exray.models.io import save_model

SYMBOLS = ("red", "green", "blue", "yellow")
BIAS = [0, 0.1, 0.05, 0.05]
CLEAN_VOTES = [{"red": 2}, {"green": 2.5}, {"blue": 2}, {"yellow": 2}]
PLANTED_VOTES = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}, {"yellow": 2}]
#: (poisoned, ground-truth trigger type) of each model
DESIGN = [(False, None), (True, "polygon"), (False, None), (True, "instagram")]
FAST = EvaluationConfig(mask_config=MaskConfig(epochs=100), method_options={"ig": {"steps": 16}})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run the marked tests on one xdist worker")


def write_colour_zoo(root, variant=0):
    """The population; another ``variant`` is a separate population of the same design (other biases,
    so other weights, and other example images)."""
    rows = ["name,status,poisoned"]
    for i, (poisoned, kind) in enumerate(DESIGN):
        name = f"id-{i:08d}"
        triggers = [{"type": kind, "source_classes": [0, 2, 3], "target_class": 1}] if poisoned else []
        votes = PLANTED_VOTES if poisoned else CLEAN_VOTES
        bias = [b + 0.01 * variant for b in BIAS]
        model = build_model("colour_detectors", 4, votes=votes, bias=bias)
        save_model(
            model, root / name, input_size=(3, 16, 16), metadata={"poisoned": poisoned, "triggers": triggers}
        )
        (root / name / "clean-example-data").mkdir()
        for c, colour in enumerate(SYMBOLS):
            for k, image in enumerate(symbol_images(colour, 10, size=16, seed=c + 10 * i + 100 * variant)):
                write_image(root / name / "clean-example-data" / f"class_{c}_example_{k}.png", image)
        rows.append(f"{name},ok,{poisoned}")
    (root / "METADATA.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def colour_zoo(tmp_path_factory):
    return write_colour_zoo(tmp_path_factory.mktemp("colour-zoo"))


def read_json(path):
    return json.loads(path.read_text())
