"""redset's benchmarks (pytest-benchmark); the shared code is :mod:`redset._benchmark`."""
