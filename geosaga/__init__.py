"""geosaga: a multi-region order service where every order is a Temporal saga."""
