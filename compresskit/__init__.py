"""compresskit: the helper package of the compresskit workbook on neural-network compression.

One flat module per family; each declares its public names in ``__all__`` (DESIGN.md lists where each one lives).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
