"""
What the server tells its operator: log events and their renderings, counters and
Prometheus metrics.
"""
