"""Benchmark: rlm-tui against the official rlms package on one scripted loopback model (python -m rlm_tui.bench)."""
