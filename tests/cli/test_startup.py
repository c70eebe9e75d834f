"""``llmbatch --help`` stays instant: command modules import the API models (pydantic) and
the contracts only when a command runs."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_commands_imports_no_models() -> None:
    code = (
        "import sys, llmbatch.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith(('llmbatch.api', 'pydantic'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
