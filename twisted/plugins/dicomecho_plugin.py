# -*- test-case-name: tests.test_tap -*-
# The twistd drop-in for dicomecho: `twistd -n dicomecho --port 11112`.
# Keep this import-light: twistd, trial and every getPlugins() caller import
# it, so it must never import the reactor or dicomecho itself.
from twisted.application.service import ServiceMaker

dicomecho = ServiceMaker(
    "dicomecho",
    "dicomecho.server.tap",
    "DICOM Verification SCP (C-ECHO responder), echoscp-compatible options.",
    "dicomecho",
)
