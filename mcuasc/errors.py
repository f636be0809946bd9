"""The one exception type the CLI turns into a clear sentence and exit code 2."""


class InputError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one sentence."""

    exit_code = 2


class ToolError(Exception):
    """A required external tool (compiler, emulator) is missing or failed; the message says which and why."""

    exit_code = 3
