"""A region's worker process, assembled: the saga and relay workflows on the shared queue and the
region's activities on its own. Nothing in the project imports it but the CLI that starts it."""
