import sys

from stylekd_jax.explore.cli import main

sys.exit(main())
