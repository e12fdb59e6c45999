"""The one error type for mistakes a user can fix, and the CLI wrapper that reports it."""

from __future__ import annotations

import argparse
import functools
import sys


class UserError(Exception):
    """Bad input from the user (a file, a config value, a flag): reported in one line, exit 2."""


def cli_entry(main):
    """Wrap a CLI `main` so a UserError prints one line to stderr and exits with status 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:  # Ctrl-C outside a training loop (which checkpoints first)
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is a UserError (one line, exit 2) rather than usage text."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")
