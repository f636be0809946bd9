"""Output folders that mcuasc owns: used only if new, empty, or made earlier by the same command.

Each command marks its folder with a file; a folder holding anything else is refused, so nothing a user had
is ever overwritten.
"""

from __future__ import annotations

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
