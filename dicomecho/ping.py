# -*- test-case-name: tests.test_ping -*-
"""
The documented path `python -m dicomecho.ping`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

import sys

from dicomecho.cli.ping import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
