"""Benchmarks: `python -m bench [NAME] [--quick]`. Each prints a table and appends JSON lines to
bench/results/results.jsonl. Figures, not assertions: these machines are shared and noisy."""
