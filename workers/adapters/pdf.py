"""Letters as PDF, with WeasyPrint: Pango lays the text out with the fonts Debian installs
(DejaVu, which has every Lithuanian letter); nothing is fetched, the HTML carries its styles.
The PDF is PDF/A-3b, the archival form that may carry attachments (the signed certificate)."""

from __future__ import annotations

import io
from collections.abc import Mapping

from ..domain.errors import InternalError


class WeasyTypesetter:
    """The :class:`~workers.app.ports.letters.Typesetter` of the workers and the console."""

    def pdf(self, html: str, attachments: Mapping[str, bytes] | None = None) -> bytes:
        import weasyprint  # loads Pango: only where letters are written

        files = [
            weasyprint.Attachment(file_obj=io.BytesIO(data), name=name)
            for name, data in (attachments or {}).items()
        ]
        try:
            document = weasyprint.HTML(string=html, url_fetcher=_refuse)
            written = document.write_pdf(attachments=files, pdf_variant="pdf/a-3b")
        except (OSError, ValueError) as error:
            raise InternalError(f"the letter could not be typeset: {error}") from error
        assert written is not None  # without a target, write_pdf returns the bytes
        return bytes(written)


def _refuse(url: str, timeout: int = 10, ssl_context: object = None) -> dict[str, object]:
    """Letters are self-contained: a reference to anything outside is a mistake, never a fetch."""
    raise ValueError(f"letters fetch nothing ({url[:40]!r})")
