"""
Command-line tools beside the server: the health-check client and the credentials
file editor.
"""
