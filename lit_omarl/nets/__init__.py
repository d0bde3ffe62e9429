"""Networks: per-agent networks (GRU / MLP) and value-decomposition mixers."""

from lit_omarl.nets.agents import AGENTS, AgentInputs, MLPAgent, RNNAgent, make_agent
from lit_omarl.nets.mixers import LinearMixer, QMixer, VDNMixer, make_mixer

__all__ = [
    "AGENTS",
    "AgentInputs",
    "LinearMixer",
    "MLPAgent",
    "QMixer",
    "RNNAgent",
    "VDNMixer",
    "make_agent",
    "make_mixer",
]
