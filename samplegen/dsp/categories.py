"""Instrument categories: the original project's file-name keyword table and General MIDI programs.

General MIDI programs are numbered 0-127 here (the MIDI program-change value; the GM 1 document
lists them as 1-128).
"""

from __future__ import annotations

import re
import unicodedata

NO_CATEGORY = "No Category"
DRUM_KIT = "Drum Kit"

# The original keyword table, in its matching order: the first category with a matching keyword
# wins. (The original also listed a few singer names under Vocal; they are not recorded.) Added
# here: "music box" and "xylophone" as the General MIDI names spell them (the original's
# "musicbox" and "xylo" never matched those), and "electric piano" / "electric grand" before
# Guitar, whose "electric" filed every electric piano under Guitar.
CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Bell", ("bell", "musicbox", "music box", "glock", "celesta", "vibraphone", "chime", "tubular", "glockenspiel")),
    ("Wind", ("flute", "clarinet", "bassoon", "blown", "bottle", "breath", "calliope")),
    ("Bass", ("bass", "pickbass", "ebass")),
    ("E-Piano", ("epiano", "e-piano", "electric piano", "electric grand", "rhod", "road", "keys")),
    (
        "Guitar",
        ("guitar", "eguitar", "banjo", "steel", "bandura", "hawaii", "electric", "fretless", "classicguitar"),
    ),
    (
        "Plucked",
        ("pluck", "harpsichord", "harp", "bandura", "sitar", "dulcimer", "dulcimar", "charang", "harpsicord", "zither"),
    ),
    ("Percussion", ("marimba", "xylo", "xylophone", "kalimba", "drum")),
    ("Strings", ("string", "strng", "strings", "violin", "viola")),
    ("Brass", ("brass", "trumpet", "sax", "flugel", "horn", "trombone")),
    ("Organ", ("organ", "tonewheel", "hammond", "wurlitzer", "farfisa")),
    (
        "Vocal",
        ("oh", "ah", "eh", "oo", "aa", "choir", "human", "vocoder", "vox", "vocal", "vowel", "voice", "vocalize", "formant"),
    ),
    ("Pad", ("pad", "ambient", "dream", "aqua", "arctic", "kingdom", "iceland")),
    ("Piano", ("piano",)),
    ("Pulsing", ("bpm", "sequence", "particle")),
    (
        "Synth",
        (
            "saw", "sawtooth", "wavetable", "sine", "sines", "square", "triangle", "triangles",
            "pulse", "sync", "acid", "moog", "analog", "synth", "filter", "vintage", "additive",
            "harmonic", "resonance", "mini", "chiptone", "sonar", "trance", "lead", "polyphonic",
        ),
    ),
    ("Synth Makes", ("casio", "korg", "yamaha", "roland", "ensoniq", "mu", "alesis", "kawai")),
)  # fmt: skip

CATEGORIES: tuple[str, ...] = tuple(name for name, _ in CATEGORY_KEYWORDS) + (NO_CATEGORY,)

_NON_LETTERS = re.compile(r"[^a-z]+")


def _words(text: str) -> list[str]:
    # Accents folded first: "Flûte" is "flute", not "fl" and "te".
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return [w for w in _NON_LETTERS.split(folded.lower()) if w]


def category_from_name(name: str) -> str:
    """The original's category for a file name (or any text), or "No Category".

    The name is lower-cased and split on non-letters; a keyword matches a whole word. A keyword
    that itself contains non-letters or spaces ("e-piano", "music box") matches the same run of
    words ("e", "piano").
    """
    words = _words(name)
    if not words:
        return NO_CATEGORY
    present = set(words)
    joined = f" {' '.join(words)} "
    for category, keywords in CATEGORY_KEYWORDS:
        for keyword in keywords:
            parts = _words(keyword)
            if len(parts) == 1:
                if parts[0] in present:
                    return category
            elif f" {' '.join(parts)} " in joined:
                return category
    return NO_CATEGORY


# General MIDI Level 1 program names, program 0 first.
GM_PROGRAM_NAMES: tuple[str, ...] = (
    # Piano
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavi",
    # Chromatic Percussion
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    # Organ
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    # Guitar
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar harmonics",
    # Bass
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    # Strings
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    # Ensemble
    "String Ensemble 1", "String Ensemble 2", "SynthStrings 1", "SynthStrings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    # Brass
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "SynthBrass 1", "SynthBrass 2",
    # Reed
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    # Pipe
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    # Synth Lead
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    # Synth Pad
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    # Synth Effects
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    # Ethnic
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bag pipe", "Fiddle", "Shanai",
    # Percussive
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    # Sound Effects
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)  # fmt: skip

# The 16 GM families, eight consecutive programs each.
GM_FAMILIES: tuple[str, ...] = (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
    "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive",
    "Sound Effects",
)  # fmt: skip

# A family's usual category in the original's table.
_FAMILY_CATEGORY: dict[str, str] = {
    "Piano": "Piano",
    "Chromatic Percussion": "Bell",
    "Organ": "Organ",
    "Guitar": "Guitar",
    "Bass": "Bass",
    "Strings": "Strings",
    "Ensemble": "Strings",
    "Brass": "Brass",
    "Reed": "Wind",
    "Pipe": "Wind",
    "Synth Lead": "Synth",
    "Synth Pad": "Pad",
    "Synth Effects": "Synth",
    "Ethnic": "Plucked",
    "Percussive": "Percussion",
    "Sound Effects": NO_CATEGORY,
}

# Programs whose instrument the keyword table puts elsewhere than their family's category.
_PROGRAM_CATEGORY: dict[int, str] = {
    4: "E-Piano",  # Electric Piano 1
    5: "E-Piano",  # Electric Piano 2
    6: "Plucked",  # Harpsichord
    12: "Percussion",  # Marimba
    13: "Percussion",  # Xylophone
    15: "Plucked",  # Dulcimer
    22: "Wind",  # Harmonica
    46: "Plucked",  # Orchestral Harp
    47: "Percussion",  # Timpani
    52: "Vocal",  # Choir Aahs
    53: "Vocal",  # Voice Oohs
    54: "Vocal",  # Synth Voice
    64: "Brass",  # Soprano Sax
    65: "Brass",  # Alto Sax
    66: "Brass",  # Tenor Sax
    67: "Brass",  # Baritone Sax
    105: "Guitar",  # Banjo
    108: "Percussion",  # Kalimba
    109: "Wind",  # Bag pipe
    110: "Strings",  # Fiddle
    111: "Wind",  # Shanai
    112: "Bell",  # Tinkle Bell
}


def _check_program(program: int) -> int:
    p = int(program)
    if p != program or not 0 <= p <= 127:
        raise ValueError(f"GM program: must be an integer 0-127, got {program!r}")
    return p


def gm_program_name(program: int, drum: bool = False) -> str:
    """The GM 1 name of `program` (0-127); "Drum Kit" for the percussion channel."""
    return DRUM_KIT if drum else GM_PROGRAM_NAMES[_check_program(program)]


def gm_family(program: int, drum: bool = False) -> str:
    """The GM family of `program` (0-127), one of `GM_FAMILIES`; "Drum Kit" for drums."""
    if drum:
        return DRUM_KIT
    return GM_FAMILIES[_check_program(program) // 8]


def category_from_gm_program(program: int, drum: bool = False) -> str:
    """One of the original's categories for a GM program (drum kits are "Percussion")."""
    if drum:
        return "Percussion"
    p = _check_program(program)
    return _PROGRAM_CATEGORY.get(p, _FAMILY_CATEGORY[GM_FAMILIES[p // 8]])
