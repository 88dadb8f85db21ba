"""The estimator registry: one module per estimator, one line here (interface: base.py)."""
from .auto import Auto
from .binned import Binned
from .gcmi import GCMI
from .kde import KDE
from .ksg import KSG
from .unit import UnitMI

#: estimator= name -> its class (an estimator's options are its class's keyword arguments).
ESTIMATORS = {"kde": KDE, "binned": Binned, "unit": UnitMI, "ksg": KSG, "gcmi": GCMI, "auto": Auto}
