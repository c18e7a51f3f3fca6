"""Random "adjective-noun" names for grids created without one, as Kontena made them."""

from __future__ import annotations

import random

ADJECTIVES = (
    "autumn", "hidden", "bitter", "misty", "silent", "empty", "dry", "dark", "summer",
    "icy", "delicate", "quiet", "white", "cool", "spring", "winter", "patient", "twilight",
    "dawn", "crimson", "wispy", "weathered", "blue", "billowing", "broken", "cold", "damp",
    "falling", "frosty", "green", "long", "late", "lingering", "bold", "little", "morning",
    "muddy", "old", "red", "rough", "still", "small", "sparkling", "shy", "wandering",
    "withered", "wild", "black", "young", "holy", "solitary", "fragrant", "aged", "snowy",
    "proud", "floral", "restless", "divine", "polished", "ancient", "purple", "lively",
    "nameless",
)  # fmt: skip

NOUNS = (
    "waterfall", "river", "breeze", "moon", "rain", "wind", "sea", "morning", "snow", "lake",
    "sunset", "pine", "shadow", "leaf", "dawn", "glitter", "forest", "hill", "cloud",
    "meadow", "sun", "glade", "bird", "brook", "butterfly", "bush", "dew", "dust", "field",
    "fire", "flower", "firefly", "feather", "grass", "haze", "mountain", "night", "pond",
    "darkness", "snowflake", "silence", "sound", "sky", "shape", "surf", "thunder",
    "violet", "water", "wildflower", "wave", "resonance", "wood", "dream", "cherry", "tree",
    "fog", "frost", "voice", "paper", "frog", "smoke", "star",
)  # fmt: skip


def random_grid_name(rng: random.Random | None = None) -> str:
    """A name like ``misty-river``; not secret, so ``random`` is fine."""
    pick = rng or random
    return f"{pick.choice(ADJECTIVES)}-{pick.choice(NOUNS)}"
