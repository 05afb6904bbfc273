"""glasskey's benchmark harness: a fake upstream, a bare proxy, a load generator and the runner.

``make bench`` (``python -m bench.run``) starts everything on loopback, measures, stops it all
by process id and writes ``docs/performance.md``. Benchmarks are not tests: nothing here asserts
a timing; it measures and reports.
"""
