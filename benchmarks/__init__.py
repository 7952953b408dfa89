"""benchmarks: quality and speed reports committed under `benchmarks/results/`. Nothing imports this."""
