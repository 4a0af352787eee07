"""What the benchmarks that report ``(measure, result)`` rows share: their command line
(``--quick``) and the Markdown table they print when run on their own."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def table_cli(description: str, main: Callable[..., list[tuple[str, str]]]) -> int:
    """Parse ``--quick``, run ``main(quick=...)`` and print its rows as a Markdown table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    print("| measure | result |\n|---|---|")
    for name, value in main(quick=args.quick):
        print(f"| {name} | {value} |")
    return 0
