"""A module no task row may ever cause to be imported (see tests/tasks/test_security.py).

Importing it leaves a marker file, so a test can prove from outside that nobody did.
"""

import os
from pathlib import Path

marker = os.environ.get("TASKS_CRAFTED_MARKER")
if marker:
    Path(marker).write_text(f"imported by pid {os.getpid()}\n")


def payload():
    return "should never run"
