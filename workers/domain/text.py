"""Texts people read are written in English in the code and translated where they are shown,
in the reader's language (the catalogues: workers/i18n)."""


def N_(message: str) -> str:  # noqa: N802 - the gettext convention, known to the extractor
    """Marks a text for the message catalogues; it is translated where it is shown."""
    return message
