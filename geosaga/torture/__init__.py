"""`geosaga torture`: a seeded fault-schedule harness.

It starts a stack of its own (Temporal dev server, payment gateway, API, a worker per region,
replication on), drives a mixed workload while a nemesis carries out a fault schedule drawn
from the seed alone, lets the system quiesce acting as its operator, runs the independent
checker (audit.py) and writes a report. Same seed, same schedule: run.py is the story.
"""
