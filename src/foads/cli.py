"""The `foads` command: `foads run ...`, `foads report ...`, `foads replay ...`,
`foads bench ...`, each exactly `python -m foads.<command> ...`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "run a stream (a Hydra app: method=..., dataset=..., -m for sweeps)",
    "replay": "run a stream on cached backbone maps (the same arguments as run)",
    "report": "lay out the finished jobs under a folder: foads report <dir>",
    "bench": "speed at the paper's sizes (prints figures)",
    "pool": "the acceptance-rule study on a pool of streams",
}


def usage() -> str:
    lines = [f"  foads {name:<7} {text}" for name, text in COMMANDS.items()]
    return "usage: foads <command> [arguments]\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"foads: unknown command {command!r}\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"foads.{command}")
    # Hydra apps read sys.argv themselves; argparse ones take it too when given none.
    sys.argv = [f"foads {command}", *rest]
    module.main()


if __name__ == "__main__":
    main()
