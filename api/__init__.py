"""The HTTP API: validation, idempotent submission, status, cancellation and listing."""
