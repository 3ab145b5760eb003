"""`python -m zoo_server [flags]` is `zoo serve [flags]`."""

from __future__ import annotations

import sys

from zoo_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
