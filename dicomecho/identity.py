# -*- test-case-name: tests.test_security -*-
"""
The documented path `dicomecho.identity.IUserIdentityChecker`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

from dicomecho.security.identity import IdentityRefused, IUserIdentityChecker

__all__ = ["IUserIdentityChecker", "IdentityRefused"]
