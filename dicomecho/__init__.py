# -*- test-case-name: tests -*-
"""
dicomecho: a DICOM Verification SCP (C-ECHO responder) for Twisted.

The wire layer is pure: L{dicomecho.pdu} (PDU values and their codec),
L{dicomecho.items} (items and sub-items) and L{dicomecho.framer} (splitting
a byte stream into PDUs). None of them touches a socket or a reactor.
"""

__version__ = "0.1.0"
