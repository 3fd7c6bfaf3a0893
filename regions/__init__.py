"""Regions: the catalog, each region's store and the worker that pins a process to a region."""
