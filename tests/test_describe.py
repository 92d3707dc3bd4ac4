"""A variation's effects in words: every effect that is on gets its phrase, neutral ones none."""

from __future__ import annotations

from dataclasses import fields

from pipeline.media.describe import describe
from pipeline.media.effects import EffectOptions, VariationParams, sample_variations


def test_neutral_parameters_say_nothing():
    assert describe(VariationParams()) == []


def test_each_effect_is_named():
    p = VariationParams(zoom=1.05, rotation_deg=-0.6, mirror=True, brightness=0.02, contrast=0.97,
                        saturation=1.1, hue_deg=-3.0, noise=1, speed=0.98, gain_db=-0.7,
                        pitch=1.04)
    assert describe(p) == [
        "mirrored", "5 % zoom", "tilted 0.6°", "hue −3°", "brighter", "less contrast",
        "richer colour", "light grain", "0.98× speed", "pitch up 4 %", "−0.7 dB",
    ]


def test_every_sampled_variation_of_every_option_set_is_described():
    """Whatever the options, a default draw changes something a person can be told about, and a
    family that is off never appears."""
    for effects in (None, "-mirror", "-zoom,+rotation", "+pitch,+hue", "-color,-noise,-audio"):
        options = EffectOptions.parse(effects)
        for p in sample_variations("seed", 0, 20, options):
            words = describe(p)
            assert words, p
            if "mirror" in options.exclude:
                assert "mirrored" not in words
            if "pitch" in options.exclude:
                assert not any(w.startswith("pitch") for w in words)
    assert {f.name for f in fields(VariationParams)} >= {"pitch", "gain_db", "speed"}
