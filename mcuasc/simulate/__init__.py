"""Stage 5, simulate: prove on the host that the deployed pipeline gives the quantized reference's logits, bit for bit."""

from mcuasc.simulate.deployment import Deployment, load_deployment
from mcuasc.simulate.localise import FeatureDivergence, OperatorDivergence
from mcuasc.simulate.report import SummaryRow, csv_text, summarize
from mcuasc.simulate.simulator import ClipResult, SimulateOptions, Simulator, WindowResult, simulate_many
from mcuasc.simulate.sources import ClipSource, resolve_clips

__all__ = ["ClipResult", "ClipSource", "Deployment", "FeatureDivergence", "OperatorDivergence", "SimulateOptions",
           "Simulator", "SummaryRow", "WindowResult", "csv_text", "load_deployment", "resolve_clips", "simulate_many",
           "summarize"]
