"""Recordings in every format callvault accepts, made at run time by sox and opusenc (deploy/
installs them) from one tone sweep: for the audio tests, the player's renditions and the
browser test that plays each of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import tool

# name -> sox options that convert the source to it (opusenc makes voice.opus)
SOX_FORMATS = {
    "pcm.wav": [],
    "ulaw.wav": ["-e", "u-law"],
    "alaw.wav": ["-e", "a-law"],
    "gsm.wav": ["-e", "gsm-full-rate"],
    "stereo.wav": ["-c", "2"],
    "wideband.wav": ["-r", "16000"],
    "raw.ul": ["-t", "ul"],
    "raw.al": ["-t", "al"],
    "raw.gsm": ["-t", "gsm"],
    "ulaw.au": ["-e", "u-law", "-t", "au"],
    "cbr.mp3": [],
    "vbr.mp3": ["-r", "44100", "-c", "2", "-C", "-4.2"],
    "vorbis.ogg": [],
    "stereo.flac": ["-c", "2"],
}
STEREO = frozenset(name for name, options in SOX_FORMATS.items() if "-c" in options)
# the content type a telephony system declares for headerless audio
DECLARED = {"raw.ul": "audio/basic", "raw.al": "audio/x-alaw-basic", "raw.gsm": "audio/gsm"}


def make_formats(root: Path, seconds: float, *, stereo_split: bool = False) -> Path:
    """One mono 8 kHz recording of a tone sweep ``seconds`` long in every format under
    ``root``; with ``stereo_split`` the two-channel ones carry the sweep on the left (the
    caller) and a steady 1 kHz tone at a tenth of the level on the right."""
    sox = tool("sox")
    mono = [sox, "-n", "-r", "8000", "-c", "1", "-b", "16"]
    source = root / "source.wav"
    sweep = ["synth", str(seconds), "sine", "300-3000", "vol", "0.5"]
    subprocess.run([*mono, str(source), *sweep], check=True)
    stereo_source = source
    if stereo_split:
        right = root / "right.wav"
        tone = ["synth", str(seconds), "sine", "1000", "vol", "0.05"]
        subprocess.run([*mono, str(right), *tone], check=True)
        stereo_source = root / "split.wav"
        subprocess.run([sox, "-M", str(source), str(right), str(stereo_source)], check=True)
    for name, options in SOX_FORMATS.items():
        origin = stereo_source if name in STEREO else source
        subprocess.run([sox, str(origin), *options, str(root / name)], check=True)
    subprocess.run([tool("opusenc"), "--quiet", str(source), str(root / "voice.opus")], check=True)
    return root
