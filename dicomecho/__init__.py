# -*- test-case-name: tests -*-
"""
dicomecho: a DICOM Verification SCP (C-ECHO responder) for Twisted.

For composition in a C{.tac} or a L{MultiService}::

    from dicomecho import DICOMServerFactory, makeService, Options

Those names are imported on first use, so C{import dicomecho} stays light.
The wire layer (L{dicomecho.pdu}, L{dicomecho.items}, L{dicomecho.framer})
and the association layer (L{dicomecho.fsm}, L{dicomecho.negotiation},
L{dicomecho.dimse}, L{dicomecho.verification}) are pure; only
L{dicomecho.protocol} and L{dicomecho.tap} touch Twisted's reactor side.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DICOMServerFactory",
    "DICOMAssociationProtocol",
    "VerificationResponder",
    "IServiceResponder",
    "Options",
    "makeService",
]

_LAZY = {
    "DICOMServerFactory": "dicomecho.protocol",
    "DICOMAssociationProtocol": "dicomecho.protocol",
    "VerificationResponder": "dicomecho.verification",
    "IServiceResponder": "dicomecho.verification",
    "Options": "dicomecho.tap",
    "makeService": "dicomecho.tap",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomecho' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
