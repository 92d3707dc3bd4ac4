"""A variation's effects in words, for people: ``["mirrored", "5 % zoom", "0.98× speed"]``.

Pure. Each effect that is on (away from its neutral value by more than a rounding step) gives
one short phrase, in the order a viewer notices them: geometry, then colour, grain, time and
sound. The job page shows them beside each variation's preview; the API gives them as an
output's ``effects``.
"""

from __future__ import annotations

from pipeline.media.effects import VariationParams


def _pct(value: float) -> str:
    return f"{abs(value) * 100:.0f} %"


def describe(p: VariationParams, has_audio: bool = True) -> list[str]:
    """The phrases for the effects this variation has on; a source without sound gets none
    of the sound's (its pitch and gain were drawn, and had nothing to change)."""
    words: list[str] = []
    if p.mirror:
        words.append("mirrored")
    if p.zoom > 1.005:
        words.append(f"{_pct(p.zoom - 1)} zoom")
    if abs(p.rotation_deg) >= 0.05:
        words.append(f"tilted {abs(p.rotation_deg):.1f}°")
    words += _colour(p)
    if p.noise > 0:
        words.append("light grain")
    if abs(p.speed - 1) >= 0.005:
        words.append(f"{p.speed:.2f}× speed")
    if not has_audio:
        return words
    if abs(p.pitch - 1) >= 0.005:
        words.append(f"pitch {'up' if p.pitch > 1 else 'down'} {_pct(p.pitch - 1)}")
    if abs(p.gain_db) >= 0.05:
        words.append(f"{'+' if p.gain_db > 0 else '−'}{abs(p.gain_db):.1f} dB")
    return words


def _colour(p: VariationParams) -> list[str]:
    words = []
    if abs(p.hue_deg) >= 0.5:
        words.append(f"hue {'+' if p.hue_deg > 0 else '−'}{abs(p.hue_deg):.0f}°")
    if abs(p.brightness) >= 0.005:
        words.append("brighter" if p.brightness > 0 else "darker")
    if abs(p.contrast - 1) >= 0.005:
        words.append("more contrast" if p.contrast > 1 else "less contrast")
    if abs(p.saturation - 1) >= 0.005:
        words.append("richer colour" if p.saturation > 1 else "softer colour")
    if abs(p.gamma - 1) >= 0.005 and not words:
        words.append("tone shifted")
    return words
