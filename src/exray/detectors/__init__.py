"""Difference-based poisoned-sample detectors (spec §6.4): activation clustering, spectral signatures
and SCAn. Each takes penultimate-layer representations of a training set and its assigned labels and
returns a :class:`DetectionResult`."""

from exray.detectors.activation_clustering import ActivationClustering
from exray.detectors.contamination import SCAn
from exray.detectors.result import DetectionResult, PoisonDetector
from exray.detectors.spectral_signatures import SpectralSignatures

__all__ = ["ActivationClustering", "DetectionResult", "PoisonDetector", "SCAn", "SpectralSignatures"]
