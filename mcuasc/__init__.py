"""mcuasc: acoustic scene classification from a torch checkpoint to a Cortex-M, bit-exact on the host."""

__version__ = "0.1.0"
