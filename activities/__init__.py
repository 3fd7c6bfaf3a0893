"""Activities: local transactions, each in one region's store."""
