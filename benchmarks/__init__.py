"""Developer micro-benchmarks of single operators (not user commands; `dali-has bench` is the user-facing one)."""
