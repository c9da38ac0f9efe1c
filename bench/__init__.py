"""callvault benchmarks: see bench/README.md."""
