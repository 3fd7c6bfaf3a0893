"""Regions: the catalog, and one region's store and domain (tables, events, replication, views)."""
