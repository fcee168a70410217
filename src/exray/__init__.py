"""exray: backdoor scanning for image classifiers that tells injected backdoors from natural ones.

The public API (design §2)::

    model = exray.load_model("zoo/id-00000003")          # safe: config.json + model.safetensors
    examples = exray.load_examples("zoo/id-00000003")    # {class: Tensor[N, 3, H, W]} in [0, 1]
    verdict = exray.compare_trigger(model, victim=X_v, target=X_t, stamped=X_vt,
                                    victim_label=v, target_label=t)
    mask = exray.symmetric_mask(model, a=X_a, b=X_b, label_a=a, label_b=b)
    result = exray.scan(model, examples, scanner="abs", refine="exray", seed=0)
"""

from exray.data.examples import load_examples
from exray.differencing import (
    MaskConfig,
    MaskResult,
    TriggerCase,
    Verdict,
    compare_trigger,
    compare_triggers,
    symmetric_mask,
)
from exray.models import build_model, list_architectures
from exray.models.io import load_model, save_model
from exray.pipeline import ScanResult, ScanSettings, scan
from exray.version import __version__

__all__ = [
    "MaskConfig",
    "MaskResult",
    "ScanResult",
    "ScanSettings",
    "TriggerCase",
    "Verdict",
    "__version__",
    "build_model",
    "compare_trigger",
    "compare_triggers",
    "list_architectures",
    "load_examples",
    "load_model",
    "save_model",
    "scan",
    "symmetric_mask",
]
