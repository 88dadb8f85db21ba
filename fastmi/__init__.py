"""fastmi: fast, differentiable mutual information between neural-network layers."""
from .api import chain_mi, label_mi, layer_mi, pointwise_mi, unit_mi
from .estimators import ESTIMATORS
from .interval import MIInterval, mi_interval
from .matrix import mi_matrix
from .measures import MEASURES, MinibatchCKA, cka, cka_matrix, distance_correlation, hsic
from .monitor import MILog, information_plane_point, plot_information_plane
from .regularizer import Regularizer
from .significance import MITest, mi_test

__version__ = "0.2.0"  # the one definition (pyproject.toml reads it)
__all__ = ["layer_mi", "label_mi", "chain_mi", "unit_mi", "pointwise_mi", "mi_matrix", "mi_test", "MITest",
           "mi_interval", "MIInterval", "Regularizer", "MILog",
           "information_plane_point", "plot_information_plane", "ESTIMATORS", "MEASURES", "hsic", "cka", "cka_matrix",
           "distance_correlation", "MinibatchCKA"]
