"""
Who may be served: access lists, the credentials file, user identity policy and the
TLS policy.
"""
