"""compresskit: the helper package of the compresskit workbook on neural-network compression."""

__version__ = "0.1.0"
