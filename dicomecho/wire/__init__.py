"""
The wire layer: PDUs and their items (PS3.8 §9.3), the incremental framer, and typed
decode errors. Pure: bytes in, values or typed errors out.
"""
