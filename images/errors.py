"""Errors of the images package: one type per thing a caller may want to tell apart."""

from __future__ import annotations


class ImagesError(Exception):
    """Base of every error raised by the images package."""


class UnknownImage(ImagesError, KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown image {name!r}; the catalog has: {', '.join(sorted(known))}")
        self.name = name

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownProfile(ImagesError, KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown tuning profile {name!r}; known: {', '.join(sorted(known))}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownVendor(ImagesError):
    """The system vendor string matches none of the BIOS attribute maps."""

    def __init__(self, vendor: str | None) -> None:
        super().__init__(
            f"no BIOS attribute map for system vendor {vendor!r} "
            "(known: Dell, HPE, Supermicro, Lenovo)"
        )
        self.vendor = vendor


class UnsupportedBiosValue(ImagesError):
    """The profile asks for a value the vendor map has no attribute value for."""


class BiosNamesRequired(ImagesError):
    """The vendor's attribute names can only be resolved against the BMC's own names."""


class BiosAttributeNotFound(ImagesError):
    """A vendor attribute the profile needs is not among the BMC's attribute names."""


class UnknownArtifact(ImagesError):
    """A file that is not one of the image's boot artifacts was asked for."""
