"""``python -m redset`` / ``redset``: ``--version``, ``server``, ``bench``, ``demo``."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: redset [--version] COMMAND [options]

commands:
  server  run an embedded Valkey on 127.0.0.1:6379 until Ctrl-C (to try redset)
  bench   compare redset with redis-py by hand and the raw-socket limit
  demo    producers and consumers in separate processes, checked end to end

'redset --version' says whether the compiled extension is in use (and why not).
'redset COMMAND --help' lists a command's options."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a ``redset`` command; return the exit status."""
    from redset import _cli

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("--version", "-V", "version"):
        return _cli.run_command("redset", lambda: print(_cli.version_line()) or 0)
    if command == "server":
        return _cli.server_main(rest)
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
