"""Benchmarks: each prints ratios against anchors measured in the same run."""
