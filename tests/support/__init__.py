"""
What the tests share: captured bytes, server processes, real peers,
test-time PKI, hostile clients and the factory-in-a-subprocess server.
Imported by tests and by fuzz/, never by dicomecho.
"""
