# -*- test-case-name: tests.test_ping,tests.test_passwd -*-
"""
Command-line tools beside the server: the health-check client and the credentials
file editor.
"""
