"""Benchmarks: asyncsignals side by side with its peers and with hand-written floors.

Run ``python -m benchmarks --help`` from the repository root; see README.md here.
"""
