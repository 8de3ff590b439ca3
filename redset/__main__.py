"""``python -m redset`` / ``redset``: the ``bench`` and ``demo`` commands."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: redset COMMAND [options]

commands:
  bench   compare redset with redis-py by hand and the raw-socket limit
  demo    producers and consumers in separate processes, checked end to end

'redset COMMAND --help' lists a command's options."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``redset bench`` or ``redset demo``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "bench":
        from redset import bench

        return bench.main(rest)
    if command == "demo":
        from redset import demo

        return demo.main(rest)
    print("redset: unknown command %r\n\n%s" % (command, USAGE), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
