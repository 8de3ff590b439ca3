"""``python -m redset`` / ``redset``: the command line (see :mod:`redset._commands`)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a ``redset`` command; return the exit status."""
    from redset._commands import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
