"""The TensorBoard command printed after a run or the demo, written so it works as printed.

``tensorboard`` installed in a virtual environment is not on the ``PATH`` of a
fresh shell, so the command names the executable beside this Python.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def tensorboard_command(logdir: Path) -> str:
    """A TensorBoard command for ``logdir`` that works as printed: the one installed beside this Python."""
    exe = Path(sys.executable).parent / "tensorboard"
    if not exe.exists():
        found = shutil.which("tensorboard")
        exe = Path(found) if found else None
    if exe is None:
        return f"{sys.executable} -m tensorboard.main --logdir {logdir}"
    try:
        shown = os.path.relpath(exe) if Path(exe).is_absolute() and Path.cwd() in Path(exe).parents else str(exe)
    except ValueError:
        shown = str(exe)
    if os.sep not in shown:
        shown = "." + os.sep + shown
    return f"{shown} --logdir {logdir}"
