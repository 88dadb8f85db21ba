"""Triton kernels and their launchers only (no autograd, no API); installed as fastmi.kernels."""
