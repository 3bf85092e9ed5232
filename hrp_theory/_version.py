"""The package version (read by hatch for the wheel, and by ``results.provenance``)."""

__version__ = "0.1.0"
