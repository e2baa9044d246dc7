"""Necks: turn a trunk's feature maps into the maps the detector heads read."""

from .fpn import FPN, DetNetFPN, LastLevelP6P7

__all__ = ["FPN", "DetNetFPN", "LastLevelP6P7"]
