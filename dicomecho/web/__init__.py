"""
The live page (C{--web}): who called, what happened, what to change, as
C{twisted.web} resources over the server's history of connections.
"""
