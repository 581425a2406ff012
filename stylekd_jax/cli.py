"""argparse value types shared by the command-line tools: a bad number is one usage line, exit 2."""

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (sample counts, batch sizes, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`error: ...`, exit 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
