"""``python -m ralif.cli``: the ``ralif`` command."""

import sys

from ralif.cli import main

if __name__ == "__main__":
    sys.exit(main())
