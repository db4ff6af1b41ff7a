"""``python -m bench``: the engine benchmarks (see bench/engine_bench.py)."""

from bench.engine_bench import main

main()
