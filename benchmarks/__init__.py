"""Benchmarks: `siammae-bench` (every loader on the same clips, in interleaved rounds), the training-step
benchmark, and the one-command GPU check. Raw results live in benchmarks/results/."""
