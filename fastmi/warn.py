"""Warnings that point at the user's line, not at fastmi's."""
import sys
import warnings


def warn_user(message, category=RuntimeWarning):
    """warnings.warn with the stack level of the first frame outside the fastmi package (and torch's
    wrappers around it, such as torch.no_grad's), however deep inside fastmi the warning is raised (a
    fixed stacklevel would point at fastmi's own lines)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("fastmi", "torch"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
