"""The letters a caller reads, typeset for real (WeasyPrint) and read back as a person would:
the text of the HTML and of the PDF (pdftotext), its pages as PNG (pdftoppm), the certificate
attached to the deletion letter (pdfdetach). Every statement the shop's privacy notice makes to
the caller (docs/examples/letters/notice.*) is in the access letter, in Lithuanian and English.

``CALLVAULT_EXAMPLES=1`` writes the letters and their pages to docs/examples/letters/."""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.tools import tool
from tests.unit.conftest import CUSTOMER_PHONE, SHOP_PHONE, World, build_world, make_wav, subject
from tests.unit.console_world import ConsoleWorld, build_console
from workers.adapters.pdf import WeasyTypesetter
from workers.adapters.signatures import check_certificate

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "letters"
PERSON = subject(phone_numbers=["8 612 34567"])
LANGUAGES = ("lt", "en")


@dataclass(frozen=True)
class Statement:
    """One statement of the notice: ``quoted`` are its own Lithuanian words (each must be in
    the notice and in the Lithuanian letter); ``lt`` and ``en`` what each letter says."""

    says: str
    quoted: tuple[str, ...]
    en: tuple[str, ...]
    lt: tuple[str, ...] = ()


NOTICE = [
    Statement(
        "calls with the shop's staff on its line are recorded",
        ("+370 521 44500", "darbuotojais yra įrašomi"),
        ("+370 521 44500", "are recorded when you call"),
    ),
    Statement(
        "1. who the controller is, with its code, address, phone and e-mail",
        (
            "asmens duomenų valdytojas yra UAB „Limedika“",
            "134056779",
            "Erdvės g. 2, Ramučiai, Kauno r. sav.",
            "+370 37 321199",
            "limedika@limedika.lt",
        ),
        (
            "controller of your personal data collected in these calls is UAB „Limedika“",
            "134056779",
            "Erdvės g. 2, Ramučiai, Kauno r. sav.",
            "+370 37 321199",
            "limedika@limedika.lt",
        ),
    ),
    Statement(
        "2. purpose: good customer service",
        ("suteikti Jums kokybišką klientų aptarnavimą",),
        ("to give you good customer service",),
    ),
    Statement(
        "2. purpose: evidence of requests and complaints about orders and veterinary advice",
        ("užfiksuoti ir išlaikyti įrodymus", "veterinarų suteiktų konsultacijų"),
        ("evidence of customers' requests and complaints", "given by veterinarians"),
    ),
    Statement(
        "2. purpose: training staff and finding training needs",
        ("mokymą bei padėti identifikuoti vidinių mokymų poreikį",),
        ("to train new and current staff", "internal training is needed"),
    ),
    Statement(
        "2. data collected: given in the call, order data, anything volunteered",
        (
            "vardas, pavardė, telefono numeris, elektroninio pašto adresas",
            "užsakymo data, numeris, prekių pavadinimas, kiekis, mokėtina suma, "
            "atsiskaitymo tvarka",
            "kurią savanoriškai mums pateiksite įrašomo pokalbio metu",
        ),
        (
            "first name, surname, phone number and e-mail address",
            "order date and number, the names and quantities of the goods, the amount payable, "
            "the payment method",
            "any other information you choose to give us during the recorded call",
        ),
    ),
    Statement(
        "2. legal basis: legitimate interest (i)-(iii), GDPR Art. 6(1)(f)",
        (
            "teisėtas interesas (i) užtikrinti ir įrodyti tinkamą klientų aptarnavimo kokybę",
            "(ii) užtikrinti naujų ar esamų darbuotojų mokymą",
            "(iii) užfiksuoti ir išlaikyti įrodymus klientų prašymų ir skundų vertinimui",
            "2016/679 Bendrojo duomenų apsaugos reglamento 6 str. 1 d. f) p.",
        ),
        ("legitimate interest (i)", "(ii) to train", "(iii) to record", "Art. 6(1)(f)"),
    ),
    Statement(
        "3. data are kept secure, partners must ensure it too",
        ("Jūsų duomenis visada laikome saugiai ir reikalaujame, kad tai užtikrintų visi mūsų",),
        ("We always keep your data secure, and we require all our partners",),
    ),
    Statement(
        "3. recipients: telecom providers, state and law-enforcement institutions, parties to "
        "incidents",
        ("telekomunikacijų paslaugų teikėj", "teisėsaugos institucij", "incidentų"),
        ("telecommunication service providers", "law-enforcement institutions", "incidents"),
    ),
    Statement(
        "3. no transfer outside the European Economic Area",
        ("europos ekonominės erdvės ribų",),
        ("outside the European Economic Area",),
    ),
    Statement(
        "4. kept one year from collection, then deleted automatically",
        ("nuo duomenų surinkimo momento, o po to automatiškai ištrinami",),
        ("1 year from the moment the data were collected, and then deleted automatically",),
        ("1 metus nuo duomenų surinkimo momento",),
    ),
    Statement(
        "5. how to learn what was collected, and where to ask",
        ("pagalba@mumbo.lt",),
        ("write to pagalba@mumbo.lt", "Access: to learn which of your personal data we hold"),
    ),
    Statement(
        "5. rectify, erase, restrict, object, portability",
        (
            "ištaisyti",
            "ištrinti",
            "apriboti duomenų tvarkymą",
            "nesutikti su duomenų tvarkymu",
            "duomenų perkeliamumą",
        ),
        ("Rectification:", "Erasure:", "Restriction:", "Objection:", "Portability:"),
    ),
    Statement(
        "5. the data protection officer's phone and e-mail",
        ("duomenų apsaugos pareigūn", "+370 37 200429", "duomenuapsauga@mumbo.lt"),
        ("data protection officer", "+370 37 200429", "duomenuapsauga@mumbo.lt"),
    ),
    Statement(
        "6. complaint at any time to the State Data Protection Inspectorate, its contacts",
        (
            "bet kuriuo metu galite pateikti skundą",
            "duomenų apsaugos inspekcij",
            "L. Sapiegos g. 17, 10312 Vilnius",
            "(8 5) 271 2804, 279 1445",
            "(8 5) 261 9494",
            "ada@ada.lt",
            "188607912",
        ),
        (
            "at any time lodge a complaint",
            "State Data Protection Inspectorate",
            "L. Sapiegos g. 17, 10312 Vilnius",
            "(8 5) 271 2804, 279 1445",
            "fax (8 5) 261 9494",
            "ada@ada.lt",
            "e-delivery box 188607912",
        ),
    ),
]


def plain(text: str) -> str:
    """Text as a person reads it: one space for any run of white space, case folded."""
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip().casefold()


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skip = tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(document: str) -> str:
    reader = _Text()
    reader.feed(document)
    return plain(" ".join(reader.parts))


def pdf_text(pdf: Path) -> str:
    out = subprocess.run([tool("pdftotext"), str(pdf), "-"], capture_output=True, check=True)
    return plain(out.stdout.decode())


def pages(pdf: Path) -> list[Path]:
    """The PDF's pages as PNG (what the examples show; look at them when the letters change)."""
    subprocess.run([tool("pdftoppm"), "-r", "80", "-png", str(pdf), str(pdf.with_suffix(""))])
    found = sorted(pdf.parent.glob(pdf.stem + "-*.png"))
    assert found
    assert all(p.stat().st_size > 5_000 for p in found)  # pages with text on them
    return found


@dataclass
class Letters:
    world: World
    files: dict[str, Path]  # access-lt.pdf, access-lt.html, erasure-en.pdf, ...
    answers: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory) -> Letters:
    """One shop, one caller: two calls (one held), a consultation, a disclosure to a telecom
    provider and one to the police; an access request and an erasure in each language."""
    root = tmp_path_factory.mktemp("letters")
    controller = json.loads((EXAMPLES / "controller.json").read_text(encoding="utf-8"))
    world = build_world(root, typesetter=WeasyTypesetter(), controller=controller)
    cw = build_console(world)
    inbound = world.store_call("c-in", make_wav(seconds=4.0))
    outbound = world.store_call(
        "c-out",
        make_wav(seconds=2.0, tone=660),
        direction="outbound",
        caller=SHOP_PHONE,
        callee=CUSTOMER_PHONE,
    )
    cw.api("qa1").get(f"/api/v1/recordings/{inbound.recording_id}/audio?purpose=training")
    _disclose(cw, "telecom_provider", "Telia Lietuva", inbound.recording_id)
    _disclose(cw, "law_enforcement", "Kauno apskrities VPK", outbound.recording_id)
    world.place_hold("H-1", {"call_ids": ["c-out"]})
    files, answers = {}, {}
    for language in LANGUAGES:
        world.send_dsr(f"A-{language}", "access", PERSON, language=language)
        answers[f"access-{language}"] = answer = _answer(world, f"A-{language}")
        archive = world.export_zip(answer["export"]["url"])
        for suffix in ("pdf", "html"):
            files[f"access-{language}.{suffix}"] = path = root / f"access-{language}.{suffix}"
            path.write_bytes(archive.read(f"letter.{suffix}"))
    for language in LANGUAGES:  # the second erasure finds the first one's erasures
        world.clock.advance(hours=1)
        world.send_dsr(f"E-{language}", "erasure", PERSON, language=language)
        answers[f"erasure-{language}"] = answer = _answer(world, f"E-{language}")
        files[f"erasure-{language}.pdf"] = path = root / f"erasure-{language}.pdf"
        path.write_bytes(world.fetch_export(answer["letter"]["url"]))
    if os.environ.get("CALLVAULT_EXAMPLES") == "1":
        for path in files.values():
            shutil.copy(path, EXAMPLES / path.name)
            if path.suffix == ".pdf":
                pages(EXAMPLES / path.name)
    return Letters(world, files, answers)


def _disclose(cw: ConsoleWorld, kind: str, recipient: str, recording_id: str) -> None:
    body = {
        "recipient": recipient,
        "recipient_kind": kind,
        "legal_basis": "GDPR Art. 6(1)(c)",
        "reference": "REQ-1",
        "recording_ids": [recording_id],
    }
    assert cw.api("dpo1").post("/api/v1/disclosures", json=body).status_code == 200


def _answer(world: World, request_id: str) -> dict[str, Any]:
    found = [d for d in world.data("dsr.results") if d["request_id"] == request_id]
    return found[-1]


def texts(letters: Letters, name: str) -> list[str]:
    """The letter's text from each form the person gets: the HTML and the PDF."""
    found = [pdf_text(letters.files[f"{name}.pdf"])]
    if f"{name}.html" in letters.files:
        found.append(html_text(letters.files[f"{name}.html"].read_text(encoding="utf-8")))
    return found


# --- the notice, statement by statement ---------------------------------------------------------
def test_the_checklist_quotes_the_notice() -> None:
    notice = plain((EXAMPLES / "notice.lt.txt").read_text(encoding="utf-8"))
    for statement in NOTICE:
        for phrase in statement.quoted:
            assert plain(phrase) in notice, (statement.says, phrase)


@pytest.mark.parametrize("statement", NOTICE, ids=lambda s: s.says[:40])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_statement_of_the_notice_is_in_the_access_letter(
    letters: Letters, statement: Statement, language: str
) -> None:
    phrases = statement.quoted + statement.lt if language == "lt" else statement.en
    for text in texts(letters, f"access-{language}"):
        missing = [p for p in phrases if plain(p) not in text]
        assert not missing, (statement.says, missing)


# --- what Art. 15 adds to the notice -------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "lt",
            [
                "2025-03-14 12:15",  # 10:15 UTC in Vilnius (EET, UTC+2)
                "0 min. 04 s",
                "jūs skambinote mums",
                "mes skambinome jums",
                "2026-03-14",  # deleted a year after the call
                "mokymas",  # consulted for training
                "telia lietuva",
                "telekomunikacijų paslaugų teikėjas",
                "saugomas ilgiau",
            ],
        ),
        (
            "en",
            [
                "14 mar 2025, 12:15",
                "0 min 04 s",
                "you called us",
                "we called you",
                "14 mar 2026",
                "training",
                "telia lietuva",
                "telecom provider",
                "kept longer: needed for a legal claim",
            ],
        ),
    ],
)
def test_the_access_letter_lists_each_call_its_deletion_and_who_saw_it(
    letters: Letters, language: str, expected: list[str]
) -> None:
    for text in texts(letters, f"access-{language}"):
        assert [e for e in expected if e not in text] == []
        assert "kauno apskrities vpk" not in text  # law enforcement: only as a category (Art. 4(9))


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_letters_are_typeset_pages(letters: Letters, language: str) -> None:
    for name in (f"access-{language}", f"erasure-{language}"):
        assert pages(letters.files[f"{name}.pdf"])
    lang = re.search(r'<html lang="(\w+)"', letters.files[f"access-{language}.html"].read_text())
    assert lang is not None
    assert lang.group(1) == language


# --- the deletion letter --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("lt", ["ką ištrynėme", "ką išsaugojome ir kodėl", "17 straipsnio 3 dalies e punktas"]),
        ("en", ["what we erased", "what we kept, and why", "art. 17(3)(e)"]),
    ],
)
def test_the_deletion_letter_says_what_went_what_stayed_and_why(
    letters: Letters, language: str, expected: list[str]
) -> None:
    answer = letters.answers[f"erasure-{language}"]
    assert answer["status"] == "partial"
    assert answer["letter"]["format"] == "pdf"
    (text,) = texts(letters, f"erasure-{language}")
    assert [e for e in expected if e not in text] == []
    assert plain(answer["certificate"]["key_id"]) in text
    assert "duomenuapsauga@mumbo.lt" in text
    assert "l. sapiegos g. 17, 10312 vilnius" in text


def test_anyone_can_verify_the_certificate_the_letter_carries(
    letters: Letters, tmp_path: Path
) -> None:
    pdf = letters.files["erasure-en.pdf"]
    subprocess.run([tool("pdfdetach"), "-saveall", "-o", str(tmp_path), str(pdf)], check=True)
    attached = json.loads((tmp_path / "certificate.json").read_text(encoding="utf-8"))
    assert attached == letters.answers["erasure-en"]["certificate"]
    keys = letters.world.container.keys.public_keys()
    assert check_certificate(attached, keys) == (True, "ok")
