# -*- test-case-name: tests.test_passwd -*-
"""
The documented path `python -m dicomecho.passwd`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

import sys

from dicomecho.cli.passwd import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
