"""Performance benchmarks (issue 9): `make bench` runs them and writes BENCHMARKS.md.

Each benchmark measures talksync side by side with a comparison run in the same session (Beam's
floor, a plain-Python reference, a per-record sync, a rate limit's bound), because the machines
they run on are shared and noisy: the ratios are the result, the absolute times only context.
"""
