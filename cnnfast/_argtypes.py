"""argparse types shared by the cnnfast commands."""
import argparse
import math


def comma_list(choices, allow_all=True):
    """argparse type: a comma-separated list of ``choices`` ('all' = every choice), order kept,
    duplicates dropped."""

    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if allow_all and items == ["all"]:
            return list(choices)
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad))} (choose from {', '.join(choices)}{', all' if allow_all else ''})"
            )
        return list(dict.fromkeys(items))

    return parse


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
