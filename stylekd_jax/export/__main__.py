import sys

from stylekd_jax.export.cli import main

sys.exit(main())
