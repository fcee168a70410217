"""Models: the architecture registry, safe model-directory I/O and layer access by module name."""

from exray.models import analytic, cnn, densenet, inception, mobilenet, nin, resnet, vgg  # noqa: F401  (register)
from exray.models.layers import LayerCut, capture, conv_blocks, default_layer, get_module, resolve_layer
from exray.models.registry import build_model, get_architecture, list_architectures, register_architecture

__all__ = [
    "LayerCut",
    "build_model",
    "capture",
    "conv_blocks",
    "default_layer",
    "get_architecture",
    "get_module",
    "list_architectures",
    "register_architecture",
    "resolve_layer",
]
