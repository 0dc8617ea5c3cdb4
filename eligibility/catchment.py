"""Postcode catchments: areas (`OX`), districts (`OX4`) and sectors (`OX4 1`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_AREA = re.compile(r"[A-Z]{1,2}")
_DISTRICT = re.compile(r"[A-Z]{1,2}[0-9][0-9A-Z]?")
_SECTOR = re.compile(r"[A-Z]{1,2}[0-9][0-9A-Z]? [0-9]")


def normalise_entry(raw: str) -> str:
    """Upper-case an entry with single spaces; ValueError unless an area, district or sector."""
    entry = " ".join(raw.upper().split())
    if not (_AREA.fullmatch(entry) or _DISTRICT.fullmatch(entry) or _SECTOR.fullmatch(entry)):
        raise ValueError(
            f"{raw!r} is not a postcode area (e.g. 'OX'), district ('OX4') or sector ('OX4 1')"
        )
    return entry


@dataclass(frozen=True, slots=True)
class Catchment:
    """A set of postcode areas, districts and sectors; empty means anywhere."""

    areas: frozenset[str]
    districts: frozenset[str]
    sectors: frozenset[str]

    @classmethod
    def from_entries(cls, entries: tuple[str, ...]) -> Catchment:
        """Sort normalised entries into areas, districts and sectors."""
        normalised = [normalise_entry(entry) for entry in entries]
        return cls(
            areas=frozenset(e for e in normalised if _AREA.fullmatch(e)),
            districts=frozenset(e for e in normalised if _DISTRICT.fullmatch(e)),
            sectors=frozenset(e for e in normalised if _SECTOR.fullmatch(e)),
        )

    @property
    def unrestricted(self) -> bool:
        """True when the catchment is empty (no restriction)."""
        return not (self.areas or self.districts or self.sectors)

    def contains(self, postcode: str | None) -> bool:
        """True when a normalised postcode ("OX4 1AA") lies in the catchment."""
        if not (self.areas or self.districts or self.sectors):
            return True
        if postcode is None:
            return False
        outward, _, inward = postcode.partition(" ")
        # The area is the letters of the outward code exactly, so "O" never matches "OX1 1AA".
        letters = 2 if outward[1:2].isalpha() else 1
        return (
            outward[:letters] in self.areas
            or outward in self.districts
            or f"{outward} {inward[:1]}" in self.sectors
        )
