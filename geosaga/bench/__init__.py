"""`geosaga bench`: real sagas over HTTP against the floor, and two stacks compared.

The CLI uses what this module exports; the modules inside are the bench's own parts."""

from geosaga.bench.ab import against
from geosaga.bench.ab import report as report_against
from geosaga.bench.main import Sizes, bench_all

__all__ = ["Sizes", "against", "bench_all", "report_against"]
