"""docs/integration.md shows the example programs exactly as they are in docs/examples/ (which
the e2e suite runs), and lists the audio formats that ingest accepts, no more and no fewer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workers.domain.audio import _ALIASES, check_audio

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "integration.md"
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
# the leading bytes of each format, as ingest sniffs them
SAMPLES = {
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/ogg": b"OggS\x00\x02\x00\x00\x00\x00\x00\x00",
    "audio/flac": b"fLaC\x00\x00\x00\x22",
    "audio/mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
    "audio/amr": b"#!AMR\n",
    # magic, header size, data size (unknown), encoding (μ-law), rate, channels
    "audio/basic": b".snd" + bytes.fromhex("00000018ffffffff0000000100001f4000000001"),
}


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_each_example_is_quoted_verbatim(example: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```$", guide(), flags=re.DOTALL | re.MULTILINE)
    assert example.read_text(encoding="utf-8") in blocks, f"{example.name} differs in the guide"
    assert f"(examples/{example.name})" in guide()


def test_accepted_audio_formats_match_ingest() -> None:
    section = guide().split("### Accepted audio formats", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    listed: dict[str, set[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        (stored,) = re.findall(r"`([^`]+)`", cells[2])
        listed[stored] = set(re.findall(r"`([^`]+)`", cells[3]))
    assert listed == {media: set(aliases) for media, aliases in _ALIASES.items()}
    for media, aliases in listed.items():
        for declared in aliases:
            assert check_audio(SAMPLES[media], declared) == media
