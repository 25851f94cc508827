"""``python -m natfwd``: the natfwd command line."""

import sys

from natfwd.cli import main

if __name__ == "__main__":
    sys.exit(main())
