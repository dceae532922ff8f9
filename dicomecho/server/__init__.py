"""
The Twisted side: the protocol and factory, admission, endpoints, the twistd
services and Options.
"""
