"""Backdoor triggers (spec §7.3.5–7.3.6): a small serialisable interface, a registry, and the injected
trigger types of the TrojAI look-alike zoo — polygon, solid patch, blended pattern, the five Instagram
filters and a random colour-transform family."""

from exray.triggers.base import Trigger, register_trigger, registered_triggers, trigger_from_config
from exray.triggers.color_transform import ColorTransformFilter
from exray.triggers.instagram import INSTAGRAM_FILTERS, InstagramFilter
from exray.triggers.patch import BlendTrigger, PatchTrigger
from exray.triggers.polygon import REGIONS, PolygonTrigger
from exray.triggers.reflection import ReflectionTrigger

__all__ = [
    "INSTAGRAM_FILTERS",
    "REGIONS",
    "BlendTrigger",
    "ColorTransformFilter",
    "InstagramFilter",
    "PatchTrigger",
    "PolygonTrigger",
    "ReflectionTrigger",
    "Trigger",
    "register_trigger",
    "registered_triggers",
    "trigger_from_config",
]
