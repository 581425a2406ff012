"""StyleKD-JAX: distil StyleGAN generators into small, consistent students (JAX/Flax)."""

__version__ = "0.1.0"
