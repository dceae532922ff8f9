"""
The documented path `dicomecho.metrics.metricsResource`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

from dicomecho.observability.metrics import metricsResource

__all__ = ["metricsResource"]
