"""Output folders that mcuasc owns: used only if new, empty, or made earlier by the same command.

Each command marks its folder with a file; a folder holding anything else is refused, so nothing a user had
is ever overwritten.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mcuasc.errors import InputError


def claim_output_dir(out_dir: Path, marker: str, command: str) -> None:
    """Create or reuse out_dir for `command` (e.g. "mcuasc demo"), or refuse with the reason."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"{out_dir} exists and is not a folder; choose another output folder.")
        if any(out_dir.iterdir()) and not (out_dir / marker).exists():
            raise InputError(f"{out_dir} is not empty and was not made by {command}; choose an empty or new folder.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / marker).write_text(f"made by {command}; it may regenerate the files in this folder\n")
    except OSError as exc:
        raise InputError(f"cannot write into {out_dir} ({exc.strerror}); choose a writable folder.") from None


def write_new_file(path: str | Path, data: bytes, *, force: bool = False, option: str = "--out") -> Path:
    """Write atomically (a temporary file beside it, then a rename); an existing file is replaced only with force."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass --force to replace it or choose another {option}.")
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist; create it first or choose another {option}.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write into {path.parent} ({exc.strerror}); choose a writable {option}.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
