"""Flash and RAM of a firmware image against its board, checked before anything is written.

Measured where mcuasc can measure (the front end cross-compiled for the board, the model's bytes, the TFLM arena the
runtime allocated); estimated where it cannot without a TFLM tree (TFLM's own code), and said so.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuasc.boards import Board

# TFLM's interpreter, allocator and planner, plus per-op kernel code (CMSIS-NN builds, -Os, Cortex-M4). An estimate
# from typical TFLM images; the mps2-an386 build with a TFLM tree prints the real size.
TFLM_CORE_FLASH_BYTES = 48 * 1024
TFLM_FLASH_BYTES_PER_OP = 6 * 1024
APPLICATION_FLASH_BYTES = 8 * 1024  # main loop, self-test, printing
# The arena is measured with TFLM's reference kernels on a 64-bit host; CMSIS-NN kernels ask for scratch buffers
# (im2col, depthwise) the reference kernels do not, and the arena is aligned: this margin covers both.
ARENA_MARGIN_BYTES = 8 * 1024
MAIN_STACK_BYTES = 4 * 1024


@dataclass(frozen=True)
class BudgetLine:
    region: str  # "flash" or "RAM"
    item: str
    bytes: int
    how: str  # "measured", "estimated", "board"


@dataclass(frozen=True)
class Budget:
    board: Board
    lines: tuple[BudgetLine, ...]

    def total(self, region: str) -> int:
        return sum(line.bytes for line in self.lines if line.region == region)

    def capacity(self, region: str) -> int:
        return self.board.flash_bytes if region == "flash" else self.board.ram_bytes

    def spare(self, region: str) -> int:
        return self.capacity(region) - self.total(region)

    @property
    def fits(self) -> bool:
        return self.spare("flash") >= 0 and self.spare("RAM") >= 0

    def to_dict(self) -> dict:
        return {
            "lines": [vars(line) for line in self.lines],
            **{f"{region.lower()}_{key}": value for region in ("flash", "RAM")
               for key, value in (("total", self.total(region)), ("capacity", self.capacity(region)), ("spare", self.spare(region)))},
            "fits": self.fits,
        }


def firmware_budget(board: Board, *, model_bytes: int, distinct_ops: int, arena_bytes: int, frontend_text: int,
                    frontend_ram: int, self_test_bytes: int, audio_buffer_bytes: int) -> Budget:
    lines = (
        BudgetLine("flash", "model flatbuffer", model_bytes, "measured"),
        BudgetLine("flash", f"TFLM runtime and {distinct_ops} op kernels", TFLM_CORE_FLASH_BYTES + distinct_ops * TFLM_FLASH_BYTES_PER_OP, "estimated"),
        BudgetLine("flash", "front end code and tables", frontend_text, "measured"),
        BudgetLine("flash", "self-test clip and expected results", self_test_bytes, "measured"),
        BudgetLine("flash", "application", APPLICATION_FLASH_BYTES, "estimated"),
        BudgetLine("flash", "reserved by the platform", board.flash_reserved_bytes, "board"),
        BudgetLine("RAM", "TFLM arena (measured + margin)", arena_bytes + ARENA_MARGIN_BYTES, "measured"),
        BudgetLine("RAM", "front end buffers", frontend_ram, "measured"),
        BudgetLine("RAM", "audio buffers", audio_buffer_bytes, "measured"),
        BudgetLine("RAM", "main stack", MAIN_STACK_BYTES, "estimated"),
        BudgetLine("RAM", "reserved by the platform", board.ram_reserved_bytes, "board"),
    )
    return Budget(board, lines)
