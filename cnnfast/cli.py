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
}


def build_parser():
    parser = argparse.ArgumentParser(prog="cnnfast", description="Fast CNN layers for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
