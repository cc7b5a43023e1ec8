"""The ``quotacache`` command line (``main``): parsing and dispatch in ``main``, the
commands in ``commands``, the checks of their input in ``inputs``, and what a failure
prints and returns in ``errors``."""

from quotacache.cli.errors import EXIT_MEANINGS, Exit, exit_codes_text, one_line
from quotacache.cli.main import main

__all__ = ["EXIT_MEANINGS", "Exit", "exit_codes_text", "main", "one_line"]
