"""The ``cnnfast`` command. Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int`` and whose docstring's first line is its help."""
import argparse
import importlib
import sys

# subcommand -> module; a module is imported only to build its parser (keep their imports light).
COMMANDS = {
    "bench": "cnnfast.bench",
    "check": "cnnfast.check",
    "info": "cnnfast.info",
    "train": "cnnfast.train",
    "viz": "cnnfast.viz",
}


def build_parser(names=None):
    """The parser, with the subcommands ``names`` (default: all of them)."""
    parser = argparse.ArgumentParser(prog="cnnfast", description="Fast CNN layers for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in names or COMMANDS:
        module = importlib.import_module(COMMANDS[name])
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the chosen command's module (all of them for --help or a wrong command).
    names = [argv[0]] if argv and argv[0] in COMMANDS else None
    args = build_parser(names).parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
