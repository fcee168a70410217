"""Exception types. Every error exray raises on bad input is an :class:`ExrayError`.

A batch job (``exray scan``, ``exray zoo build``) catches :class:`ExrayError` per model, records the
message and goes on; anything else is a bug.
"""


class ExrayError(Exception):
    """Base class of the errors exray raises for bad input or bad configuration."""


class ConfigError(ExrayError, ValueError):
    """A configuration (constructor arguments, a zoo spec, a CLI option) is invalid."""


class InputError(ExrayError, ValueError):
    """Input data (images, features, labels) has the wrong shape, is empty or holds NaN/Inf."""


class ModelLoadError(ExrayError):
    """A model directory or weights file is missing, corrupt or does not match its config."""


class UntrustedModelError(ModelLoadError):
    """Loading would unpickle a model file, which can run arbitrary code, and the user did not opt in."""


class LayerError(ExrayError, LookupError):
    """A layer name does not exist in the model, or cannot be used as a cut point."""
