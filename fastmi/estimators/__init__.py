"""The estimator registry: one module per estimator, one line here (interface: base.py)."""
from .binned import Binned
from .kde import KDE
from .ksg import KSG
from .unit import UnitMI

ESTIMATORS = {"kde": KDE, "binned": Binned, "unit": UnitMI, "ksg": KSG}
