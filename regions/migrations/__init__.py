"""Alembic migrations of a region's store (every region has the same schema).

`Store.create_schema()` runs them (`alembic upgrade head`) against the store's own engine;
`alembic -x region=us-east upgrade head` from the repository root does the same by hand, and
`alembic -x region=us-east revision --autogenerate -m "..."` writes the next revision.
"""
