"""Offline MARL algorithms: one LightningModule each, registered by name.

Every module of this package is imported here, so an algorithm decorated with
``@register_algorithm("name")`` is in ``ALGORITHMS`` (and covered by the
contract test) and importable as ``lit_omarl.algos.<ClassName>`` (the
LightningCLI ``class_path``) as soon as its file exists.
"""

import importlib
import pkgutil

from lit_omarl.algos.base import ALGORITHMS, ConservativeQMIX, OfflineMARLModule, register_algorithm

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "losses"):
        importlib.import_module(f"{__name__}.{_module.name}")

globals().update({cls.__name__: cls for cls in ALGORITHMS.values()})

__all__ = ["ALGORITHMS", "ConservativeQMIX", "OfflineMARLModule", "register_algorithm", *sorted(c.__name__ for c in ALGORITHMS.values())]
