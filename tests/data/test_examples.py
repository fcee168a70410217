import json

import numpy as np
import pytest
import torch
from PIL import Image

from exray.data.examples import load_examples
from exray.data.images import write_image
from exray.errors import InputError


def _png(path, value, size=(8, 8), mode="RGB"):
    array = np.full((*size, 3), value, dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


@pytest.mark.parametrize("folder", ["clean-example-data", "clean_example_data", "example_data", "."])
def test_trojai_class_example_layouts(tmp_path, folder):
    where = tmp_path / folder
    where.mkdir(exist_ok=True)
    for c in range(2):
        for k in (1, 2, 10):
            _png(where / f"class_{c}_example_{k}.png", 20 * c + k)
    examples = load_examples(tmp_path)
    assert sorted(examples) == [0, 1]
    assert examples[1].shape == (3, 3, 8, 8)
    assert examples[0].dtype == torch.float32
    # numeric example order: 1, 2, 10 (not 1, 10, 2)
    values = [round(float(x[0, 0, 0]) * 255) for x in examples[1]]
    assert values == [21, 22, 30]


def test_numbered_images_with_json_labels(tmp_path):
    for n, label in enumerate([2, 0, 2]):
        _png(tmp_path / f"{n}.png", 50 * n)
        payload = label if n != 1 else {"clean_label": label}
        (tmp_path / f"{n}.json").write_text(json.dumps(payload))
    examples = load_examples(tmp_path)
    assert {k: len(v) for k, v in examples.items()} == {0: 1, 2: 2}


def test_grey_and_rgba_become_rgb(tmp_path):
    _png(tmp_path / "class_0_example_0.png", 100, mode="L")
    _png(tmp_path / "class_0_example_1.png", 100, mode="RGBA")
    assert load_examples(tmp_path)[0].shape == (2, 3, 8, 8)


def test_mixed_sizes_need_a_crop(tmp_path):
    _png(tmp_path / "class_0_example_0.png", 1, size=(10, 10))
    _png(tmp_path / "class_1_example_0.png", 1, size=(12, 12))
    with pytest.raises(InputError, match="different (image )?sizes"):
        load_examples(tmp_path)
    assert load_examples(tmp_path, size=(8, 8))[1].shape == (1, 3, 8, 8)
    with pytest.raises(InputError, match="smaller than the model input"):
        load_examples(tmp_path, size=(11, 11))


def test_unlabelled_or_unreadable_files(tmp_path):
    _png(tmp_path / "picture.png", 3)
    with pytest.raises(InputError, match="cannot tell the class"):
        load_examples(tmp_path)
    (tmp_path / "picture.png").unlink()
    (tmp_path / "class_0_example_0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="not a readable image"):
        load_examples(tmp_path)
    with pytest.raises(InputError, match="holds no example images"):
        load_examples(tmp_path / "nothing-here")


def test_write_then_read_round_trip(tmp_path):
    image = torch.rand(3, 5, 7)
    write_image(tmp_path / "class_3_example_0.png", image)
    back = load_examples(tmp_path)[3][0]
    assert torch.allclose(back, image, atol=1 / 255)
