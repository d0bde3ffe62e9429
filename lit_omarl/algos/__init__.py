"""Offline MARL algorithms: one LightningModule each, registered by name."""

from lit_omarl.algos.base import ConservativeQMIX, OfflineMARLModule
from lit_omarl.algos.bc import BC
from lit_omarl.algos.cfcql import CFCQL
from lit_omarl.algos.macql import MACQL

ALGORITHMS: dict[str, type[OfflineMARLModule]] = {"bc": BC, "cfcql": CFCQL, "macql": MACQL}

__all__ = ["ALGORITHMS", "BC", "CFCQL", "ConservativeQMIX", "MACQL", "OfflineMARLModule"]
