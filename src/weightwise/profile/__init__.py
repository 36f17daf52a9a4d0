"""Profile: per-tensor invocations, bytes, placement and energy."""

from weightwise.profile.device import DeviceSpec, available_devices, load_device
from weightwise.profile.energy import TensorProfile
from weightwise.profile.meters import Measurement, Meter, get_meter
from weightwise.profile.profile import ModelProfile, analyze, profile, trace_manifest
from weightwise.profile.trace import Trace, Tracer

__all__ = [
    "DeviceSpec",
    "Measurement",
    "Meter",
    "ModelProfile",
    "TensorProfile",
    "Trace",
    "Tracer",
    "analyze",
    "available_devices",
    "get_meter",
    "load_device",
    "profile",
    "trace_manifest",
]
