"""
The documented path `twistd --logger dicomecho.logs.consoleObserver (or jsonObserver); setLogLevel`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

from dicomecho.observability.levels import setLogLevel
from dicomecho.observability.logs import consoleObserver, jsonObserver

__all__ = ["consoleObserver", "jsonObserver", "setLogLevel"]
