"""The tail every measuring command shares: compute, print the table, optionally write the JSON."""
from __future__ import annotations

import json
import sys
from typing import Callable

from .atomic import write_text_atomic
from .errors import EMOError


def report(compute: Callable[[], dict], render: Callable[[dict], str], json_path: str | None) -> int:
    """Exit status 0, or 2 with the error on stderr when `compute` raises an EMOError."""
    try:
        result = compute()
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(result))
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=1))
    return 0
