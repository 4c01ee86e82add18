"""sandlot: a self-hostable sandbox platform."""

__version__ = "0.1.0"
