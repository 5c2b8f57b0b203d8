"""What the clerk may do without a judge: freeze deposits, seize which kinds of asset, and what the law
keeps out of reach (`models.exemptions`). Built from the settings (`clerk.settings.Settings.policy`)."""

from __future__ import annotations

from dataclasses import dataclass

from models.exemptions import NO_EXEMPTIONS, Exemptions


@dataclass(frozen=True, slots=True)
class Policy:
    """What the clerk may do without a judge (settings)."""

    auto_freeze: bool = True
    auto_seize: frozenset[str] = frozenset({"real_estate", "vehicle"})
    exempt: Exemptions = NO_EXEMPTIONS
