"""Exceptions raised by diffcl_lite.

Every error message names *what* was wrong (the file or argument), *why*, and *how to fix it*.
"""
from __future__ import annotations

__all__ = ["DiffCLError", "DataFormatError", "DownloadError"]


class DiffCLError(ValueError):
    """Base class of all errors raised deliberately by diffcl_lite."""


class DataFormatError(DiffCLError):
    """A dataset file or an in-memory dataset does not have the expected format."""


class DownloadError(DiffCLError):
    """A dataset could not be downloaded or failed its checksum."""
