"""Letters to data subjects, in their language and local time (Art. 12(1): concise,
intelligible, in clear and plain language): the access letter that an access or portability
export carries beside its machine-readable manifest, and the deletion certificate for people
that an erasure or objection answer links to. Each is HTML (self-contained) and PDF.

What a letter says comes from the answer itself (the manifest, the signed certificate) and
from the controller's notice (``CALLVAULT_NOTICE_*``, ``CALLVAULT_CONTROLLER*``,
``CALLVAULT_AUTHORITY``); its words from the message catalogues (``workers/i18n``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from jinja2 import FileSystemLoader, pass_context
from markupsafe import Markup

from ...domain.model import Recording, RequestRecord
from ...domain.retention import IsoDuration
from ...domain.text import N_
from ...i18n import LANGUAGES, NONE, Localizer, environment
from ...settings import Settings
from ..ports.letters import Typesetter

log = structlog.get_logger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
CERTIFICATE_FILE = "certificate.json"


@dataclass(frozen=True)
class Letter:
    """One letter, written for people (HTML) and typeset for print (PDF)."""

    html: str
    pdf: bytes


@dataclass(frozen=True)
class Erasure:
    """What an erasure or objection answer reports, for its letter."""

    matched: list[Recording]
    held: tuple[str, ...]
    certificate: dict[str, Any]
    exports_deleted: int
    recipients: list[dict[str, Any]]


class LetterWriter:
    def __init__(self, settings: Settings, typesetter: Typesetter) -> None:
        if not settings.controller.name:
            log.warning(
                "controller_not_set",
                hint="letters to callers name no controller: set CALLVAULT_CONTROLLER "
                "(docs/examples/letters/controller.json)",
            )
        self._settings = settings
        self._typesetter = typesetter
        self._templates = environment(FileSystemLoader(TEMPLATES))
        self._templates.filters.update(period=_period, duration=_duration, whole=_whole)

    def access(self, record: RequestRecord, manifest: dict[str, Any], now: datetime) -> Letter:
        """The Art. 15 letter of an access or portability export, from its manifest."""
        tenants = _tenants(record, (r["tenant"] for r in manifest["recordings"]))
        policy = self._settings.policy
        return self._write(
            "access.html",
            record,
            tenants,
            now,
            recordings=sorted(manifest["recordings"], key=lambda r: r["started_at"]),
            recipients=manifest.get("recipients", []),
            retention=list(dict.fromkeys(policy.for_tenant(t) for t in tenants or [""])),
        )

    def erasure(self, record: RequestRecord, erasure: Erasure, now: datetime) -> Letter:
        """The deletion certificate for people: what was deleted and when, what was kept and
        why, and how anyone can check the signed certificate (attached to the PDF)."""
        tenants = _tenants(record, (r.tenant for r in erasure.matched))
        certificate = _certificate_file(erasure.certificate)
        received = record.received_at
        calls = sorted(erasure.matched, key=lambda r: r.started_at)
        return self._write(
            "erasure.html",
            record,
            tenants,
            now,
            attachments={CERTIFICATE_FILE: certificate},
            erased=[r for r in calls if r.recording_id not in erasure.held],
            held=[r for r in calls if r.recording_id in erasure.held],
            erasure=erasure,
            signed=erasure.certificate,
            certificate_sha256=hashlib.sha256(certificate).hexdigest(),
            objection_until=self._settings.objection_memory.after(received or now),
        )

    def _write(
        self,
        template: str,
        record: RequestRecord,
        tenants: list[str],
        now: datetime,
        attachments: dict[str, bytes] | None = None,
        **context: Any,
    ) -> Letter:
        localities = self._settings.localities
        first = tenants[0] if tenants else None
        language = record.language if record.language in LANGUAGES else None
        l10n = Localizer(language or localities.language_of(first), localities.calendar_of(first))
        controllers = [self._settings.controller_of(t) for t in tenants or [""]]
        html = self._templates.get_template(template).render(
            l10n=l10n,
            request=record,
            controllers=list(dict.fromkeys(controllers)),
            authority=self._settings.authority,
            notice=self._settings,
            directions=DIRECTIONS,
            written_at=now,
            **context,
        )
        return Letter(html, self._typesetter.pdf(html, attachments))


def _tenants(record: RequestRecord, of_recordings: Iterable[str]) -> list[str]:
    """The tenants whose controllers answer: the request's, else its recordings'."""
    if record.tenant:
        return [record.tenant]
    return sorted(set(of_recordings))


def _certificate_file(certificate: dict[str, Any]) -> bytes:
    """The signed certificate as a file a person can hand to anyone who checks it."""
    return (json.dumps(certificate, indent=2, ensure_ascii=False) + "\n").encode()


@pass_context
def _period(context: Any, duration: IsoDuration) -> str:
    """``1 year``, ``18 months``, ``30 days``: a retention period as people say it."""
    l10n: Localizer = context["l10n"]
    if duration.months and not duration.days and not duration.seconds:
        if duration.months % 12 == 0:
            years = duration.months // 12
            return l10n.ngettext("%(num)d year", "%(num)d years", years) % {"num": years}
        months = duration.months
        return l10n.ngettext("%(num)d month", "%(num)d months", months) % {"num": months}
    days = round(duration.months * 30.44 + duration.days + duration.seconds / 86_400)
    return l10n.ngettext("%(num)d day", "%(num)d days", days) % {"num": days}


@pass_context
def _duration(context: Any, seconds: float | None) -> str:
    """A call's length: ``4 min 07 s``."""
    if seconds is None:
        return NONE
    l10n: Localizer = context["l10n"]
    minutes, rest = divmod(round(seconds), 60)
    return l10n.gettext("%(minutes)d min %(seconds)02d s") % {"minutes": minutes, "seconds": rest}


def _whole(text: str) -> Markup:
    """A phone number or code kept on one line."""
    return Markup('<span class="nowrap">{}</span>').format(text)


# Words the templates take from code (the catalogues hold them once).
DIRECTIONS = {"inbound": N_("you called us"), "outbound": N_("we called you")}
