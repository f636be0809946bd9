"""Stage 1's models: BC-ResNet teacher and student, MobileNetV2 with coordinate attention, the DCASE baseline."""

from mcuasc.models.zoo import ARCHITECTURES, Architecture, architecture, build_model, zoo_report

__all__ = ["ARCHITECTURES", "Architecture", "architecture", "build_model", "zoo_report"]
