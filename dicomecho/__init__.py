# -*- test-case-name: tests -*-
"""
dicomecho: a DICOM Verification SCP (C-ECHO responder) for Twisted.

For composition in a C{.tac} or a L{MultiService}::

    from dicomecho import DICOMServerFactory, makeService, Options

Those names are imported on first use, so C{import dicomecho} stays light.
The layers are subpackages, lowest first: C{wire}, C{association},
C{services}, C{security}, C{observability}, C{server} (the only reactor
code) and C{cli} (docs/architecture.rst).
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
    "DICOMServerFactory": "dicomecho.server.factory",
    "DICOMAssociationProtocol": "dicomecho.server.protocol",
    "VerificationResponder": "dicomecho.services.verification",
    "IServiceResponder": "dicomecho.services.verification",
    "Options": "dicomecho.server.tap",
    "makeService": "dicomecho.server.tap",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomecho' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
