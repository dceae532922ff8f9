"""
The services offered on an association: the responder interface and Verification
(PS3.7 §9.1.5, C-ECHO).
"""
