"""`geosaga gateway`: a card-processor-style payment gateway with its own ledger.

It stands in for an external processor (docs/gateway.md is its contract): geosaga's workers
reach it over HTTP only, and it stands on `foundation/` alone (settings, key rules, SQLite).
"""
