"""
The documented path `dicomecho.verification.IServiceResponder`, kept for users:
the code lives in the layer packages (README, Architecture).
"""

from dicomecho.association.dimse import DIMSEResponse
from dicomecho.services.verification import IServiceResponder, VerificationResponder

__all__ = ["IServiceResponder", "VerificationResponder", "DIMSEResponse"]
