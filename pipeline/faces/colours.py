"""Colours for any model's class names, the same in every plot and drawing of emotions.

FER-like names (matched case-insensitively, with a few obvious synonyms such as `Anger` or
`happiness`) keep the seven FER colours. Any other name gets a slot of `PALETTE` chosen by a
hash of its normalised name; if an earlier name of the same list already holds that slot,
it takes the next free one. So:

- within one list, every name has its own colour, none of them a FER colour unless the name
  is that FER class (a second name of the same FER class gets a palette colour);
- the first name of a FER class has its FER colour in every list; another name has the same colour in every
  list where no earlier non-FER name took its slot first (FER names and later names never move it).

`PALETTE` holds 24 colours at least 17.5 CIELAB units (ΔE76) from each other and from the FER seven,
none grey or too light for a white page; beyond 24 other names in one list, extra hues follow,
distinct from every colour already given but less easy to tell apart.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable

FER_COLOURS: dict[str, str] = {
    "angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#f2b701",
    "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#7f7f7f",
}
"""The seven FER2013 classes, in the data set's order, and their colours."""

SYNONYMS: dict[str, str] = {
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy", "sadness": "sad",
    "surprised": "surprise",
}
"""Other spellings of FER classes (AffectNet, FER+, RAF-DB), normalised, to the FER name."""

PALETTE: tuple[str, ...] = (
    "#2ca02c", "#e7298a", "#fdc086", "#17becf", "#a1d99b", "#f7b6d2", "#637939", "#a6761d",
    "#aec7e8", "#fb8072", "#a6d854", "#1b9e77", "#f781bf", "#7b4173", "#bf5b17", "#9c9ede",
    "#bcbd22", "#e7ba52", "#8dd3c7", "#c49c94", "#ad494a", "#bc80bd", "#5254a3", "#e6550d",
)
"""Colours for names that are not FER classes: picked from matplotlib's qualitative maps, each
the farthest (CIELAB) from the FER seven and those picked before it."""

GOLDEN_RATIO = 0.618033988749895


def normalised(name: str) -> str:
    """`name` as colours compare it: trimmed and case-folded."""
    return name.strip().casefold()


def fer_name(name: str) -> str | None:
    """The FER class `name` means (`Anger` -> `angry`), or None when it is not one."""
    key = normalised(name)
    key = SYNONYMS.get(key, key)
    return key if key in FER_COLOURS else None


def class_colours(names: Iterable[str]) -> dict[str, str]:
    """A `#rrggbb` colour for each of `names`, all different; see the module's guarantees."""
    colours: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if name in colours:
            continue
        fer = fer_name(name)
        colour = FER_COLOURS[fer] if fer is not None and FER_COLOURS[fer] not in taken else _free_colour(name, taken)
        colours[name] = colour
        taken.add(colour)
    return colours


def bgr(colour: str) -> tuple[int, int, int]:
    """A `#rrggbb` colour as OpenCV's (blue, green, red)."""
    return int(colour[5:7], 16), int(colour[3:5], 16), int(colour[1:3], 16)


def _hash(name: str) -> int:
    """A hash of the normalised name that is the same in every process and Python version."""
    return int.from_bytes(hashlib.blake2b(normalised(name).encode(), digest_size=8).digest(), "big")


def _free_colour(name: str, taken: set[str]) -> str:
    """The palette slot of `name`, or the next free one; past a full palette, an extra hue."""
    start = _hash(name) % len(PALETTE)
    for step in range(len(PALETTE)):
        colour = PALETTE[(start + step) % len(PALETTE)]
        if colour not in taken:
            return colour
    return _extra_colour(name, taken)


def _extra_colour(name: str, taken: set[str]) -> str:
    """A hue from the name's hash, stepped by the golden ratio past taken colours.

    Past as many steps as colours are taken (hundreds of names), the next free 24-bit value.
    """
    hue = _hash(name) / 2**64
    for step in range(len(taken) + 1):
        colour = _hsv_colour((hue + step * GOLDEN_RATIO) % 1)
        if colour not in taken and colour not in FER_COLOURS.values():
            return colour
    start = int(_hsv_colour(hue)[1:], 16)
    return next(c for c in (f"#{(start + i) % 2**24:06x}" for i in range(len(taken) + 8)) if c not in taken
                and c not in FER_COLOURS.values())


def _hsv_colour(hue: float) -> str:
    """`#rrggbb` of `hue` at the palette's middling saturation and brightness."""
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.6, 0.8)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
