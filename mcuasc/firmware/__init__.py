"""Stage 4, gen-firmware: a TFLM C++ project for a board (boards/*.yaml), rendered from firmware_templates/."""

from mcuasc.firmware.budget import Budget, BudgetLine
from mcuasc.firmware.generate import FirmwareProject, FirmwareResult, generate_firmware, render_project, write_project

__all__ = ["Budget", "BudgetLine", "FirmwareProject", "FirmwareResult", "generate_firmware", "render_project", "write_project"]
