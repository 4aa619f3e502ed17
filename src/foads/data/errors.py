"""Errors raised for bad input, each naming the file or value and what was expected."""


class DatasetError(ValueError):
    """A dataset root, category or file does not match the layout its reader expects."""


class ImageReadError(OSError):
    """An image or mask file cannot be decoded."""
