"""``python -m gnomon``: the ``gnomon`` command."""

from __future__ import annotations

import sys

from gnomon._cli import main

if __name__ == "__main__":
    sys.exit(main())
