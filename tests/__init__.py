"""
Tests for dicomecho. Modules mirror the package: tests/test_<module>.py.
"""
