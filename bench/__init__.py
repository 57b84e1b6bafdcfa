"""Benchmarks: `python -m bench.NAME` from the repository root prints a table, a same-run baseline
and a last line `RESULT NAME key=value ...`; the JSON goes to bench/results/NAME.json."""
