"""The message catalogues: extracting the texts people read from the code and templates,
merging them into each language's ``.po`` file, and compiling those to ``.mo``.

    python -m workers.i18n update    # extract, merge into every .po, compile (make messages)
    python -m workers.i18n compile   # .po -> .mo only (the wheel's build does this)

A new text then waits in every ``.po`` with an empty translation (the English catalogue starts
as a copy of the code's text) until someone writes it; a changed text is marked fuzzy until
someone checks it. ``tests/unit/test_i18n.py`` fails while any is left.

This module needs Babel and the standard library only: the build hook (``hatch_build.py``)
loads it by its path before the package is installed."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent  # workers/
LOCALE_DIR = HERE / "locale"
DOMAIN = "messages"
LANGUAGES = ("lt", "en")  # the first is the default of CALLVAULT_LANGUAGE
SOURCE = "en"  # the language of the texts in the code

# Where texts are found: the usual gettext names, and the console's refusals, whose first
# argument is the message a person is shown (translated where it is shown).
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "N_": None,
    **dict.fromkeys(
        ("ConsoleError", "Invalid", "NotAllowed", "NotFound", "Conflict", "Unauthenticated"),
        (1,),
    ),
}
# (command-line output is for operators, in English: not extracted)
METHODS = [
    ("**/templates/**.html", "jinja2"),
    ("entrypoints/**.py", "ignore"),
    ("*_cli.py", "ignore"),
    ("cli.py", "ignore"),
    ("**.py", "python"),
]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
COMMENT_TAGS = ("Translators:",)


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """Every text of the package that a person reads, with the files that use it."""
    template = Catalog(project="callvault", fuzzy=False)
    found = extract_from_dir(
        PACKAGE,
        method_map=METHODS,
        options_map=OPTIONS,
        keywords=KEYWORDS,
        comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
    )
    for filename, line, message, comments, context in found:
        where = [(f"workers/{filename}", line)]
        template.add(message, None, where, auto_comments=comments, context=context)
    return template


def read(language: str) -> Catalog:
    with po_path(language).open("rb") as file:
        return read_po(file, locale=language, domain=DOMAIN)


def compiled(language: str) -> bytes:
    """The language's catalogue as ``.mo`` bytes (fuzzy translations left out)."""
    out = io.BytesIO()
    write_mo(out, read(language), use_fuzzy=False)
    return out.getvalue()


def compile_all() -> list[Path]:
    """Writes each ``.mo`` beside its ``.po``; returns the files written."""
    written = []
    for language in LANGUAGES:
        target = po_path(language).with_suffix(".mo")
        target.write_bytes(compiled(language))
        written.append(target)
    return written


def update() -> None:
    """Extract, merge the new and changed texts into every ``.po`` (translations kept),
    write them, compile."""
    template = extract()
    for language in LANGUAGES:
        path = po_path(language)
        if path.exists():
            catalog = read(language)
            template.creation_date = catalog.creation_date  # no churn in the header
        else:
            catalog = Catalog(locale=language, domain=DOMAIN, project="callvault", fuzzy=False)
        # no guessing from similar texts: a new text waits, empty, for its translation
        catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
        if language == SOURCE:
            for message in catalog:
                if message.id and not any(_strings(message)):
                    message.string = message.id
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            # no line numbers: a change elsewhere in a file leaves the catalogues alone
            write_po(file, catalog, width=100, ignore_obsolete=True, include_lineno=False)
    compile_all()


def _strings(message: Message) -> tuple[str, ...]:
    string = message.string
    return tuple(string) if isinstance(string, (tuple, list)) else (string or "",)


def untranslated(catalog: Catalog) -> Iterator[Message]:
    """Messages without a (non-fuzzy) translation in every plural form."""
    for message in catalog:
        if message.id and (message.fuzzy or not all(_strings(message))):
            yield message


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "update"
    if command not in ("update", "compile"):
        print("usage: python -m workers.i18n [update|compile]", file=sys.stderr)
        return 2
    update() if command == "update" else compile_all()
    for language in LANGUAGES:
        missing = sum(1 for _ in untranslated(read(language)))
        if missing:
            print(f"{language}: {missing} text(s) to translate in {po_path(language)}")
    return 0
