"""Deprecated name of :mod:`exray.refinement` (issue 21: the package holds EX-RAY itself — now
``exray.refinement.exray``, formerly ``baselines.differencing`` — beside the paper's baselines). ``import
exray.baselines`` and its submodules keep working, with a DeprecationWarning."""

import importlib
import sys
import warnings

from exray.refinement import *  # noqa: F403  (the deprecated name re-exports the package)
from exray.refinement import __all__  # noqa: F401

warnings.warn(
    "exray.baselines is deprecated: use exray.refinement (EX-RAY's method: exray.refinement.exray)",
    DeprecationWarning,
    stacklevel=2,
)
_RENAMED = {"differencing": "exray"}
for _name in ("attribution", "base", "differencing", "dissection", "features", "inner", "thresholds"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(
        f"exray.refinement.{_RENAMED.get(_name, _name)}"
    )
