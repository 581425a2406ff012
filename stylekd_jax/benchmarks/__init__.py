"""Speed measurements that print numbers (not tests): `python -m stylekd_jax.benchmarks.<name>`."""
