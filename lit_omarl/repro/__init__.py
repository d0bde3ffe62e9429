"""Reproduction runner: a table declared once -> every run (resumable, local or Ray) -> results tables.

A script in ``reproductions/`` declares a :class:`TableSpec` and calls
:func:`main`; see :mod:`lit_omarl.repro.table` for an example and
:mod:`lit_omarl.repro.runner` for how runs are stored and resumed.
"""

from lit_omarl.repro.render import plot_curves
from lit_omarl.repro.runner import ReproductionReport, reproduce
from lit_omarl.repro.table import Cell, PaperNumbers, Profile, ReproError, RunResult, RunSpec, TableSpec, main

__all__ = [
    "Cell",
    "PaperNumbers",
    "Profile",
    "ReproError",
    "ReproductionReport",
    "RunResult",
    "RunSpec",
    "TableSpec",
    "main",
    "plot_curves",
    "reproduce",
]
