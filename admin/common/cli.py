"""Shared entry-point wrapper for the ``python -m admin.<step>`` CLIs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from admin.common.errors import AdminError


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run ``main``; an :class:`AdminError` becomes a one-line message and exit code 2."""
    try:
        code = main(argv)
    except AdminError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
