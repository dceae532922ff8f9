"""
The association layer: the acceptor state machine (PS3.8 Table 9-10), negotiation,
DIMSE messages and the fast paths. Pure: no transport, reactor or logger.
"""
