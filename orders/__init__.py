"""The orders client: start, read, list, cancel and rerun sagas through Temporal. The API and
the CLI both call it; it raises the errors in `orders.errors`, which each maps to its own
answer."""
