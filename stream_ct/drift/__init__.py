"""Drift detection that holds up statistically, at stream speed.

``DriftMonitor`` (windowed KS and PSI, CUSUM charts, stratified, calibrated to one ARL0 by a
block bootstrap of the reference) emits ``DriftSignal`` events; ``ErrorStreamDetector``
watches a 0/1 model-error stream with river's ADWIN. See docs/drift.md.
"""

from stream_ct.drift.monitor import DriftMonitor
from stream_ct.drift.river_adapters import ErrorStreamDetector
from stream_ct.drift.signal import DriftSignal

__all__ = ["DriftMonitor", "DriftSignal", "ErrorStreamDetector"]
