"""Identifiers of a data subject, normalised so that every notation of one person matches.

Nothing here stores or logs an identifier: callers turn them into keyed digests
(:func:`digest`) at once, and only digests reach the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import phonenumbers

from .keyed import Mac

WITHHELD = "withheld"
_URI_SCHEME = re.compile(r"^(?:tel|sip|sips):", re.IGNORECASE)
_DIGITS = re.compile(r"\d")

# How telephony systems spell a number the caller withheld (compared case-insensitively).
WITHHELD_WORDS = frozenset(
    {
        "anonymous",
        "unknown",
        "restricted",
        "unavailable",
        "private",
        "blocked",
        "withheld",
    }
)
# Twilio's stand-ins for a withheld caller ID: the words above spelled on a phone keypad
# (ANONYMOUS, UNKNOWN, RESTRICTED, UNAVAILABLE, BLOCKED); RESTRICTED also arrives as +1 737....
TWILIO_WITHHELD = frozenset(
    {"266696687", "8656696", "7378742833", "17378742833", "86282452253", "2562533"}
)
_PUNCTUATION = re.compile(r"[\s()./-]")


def is_withheld(text: str) -> bool:
    """Whether a caller or callee field says the number was withheld rather than giving one.

    Empty, the words of :data:`WITHHELD_WORDS` in any case (bare, or as the user part of a
    ``tel:``/``sip:`` URI such as ``sip:anonymous@anonymous.invalid``), a run of zeros
    (FreeSWITCH's default ``0000000000``) and Twilio's keypad numbers.
    """
    user = _URI_SCHEME.sub("", text.strip()).split("@", 1)[0].split(";", 1)[0].strip()
    if user.casefold() in WITHHELD_WORDS or not user:
        return True
    digits = _PUNCTUATION.sub("", user).removeprefix("+")
    if not digits.isdigit():
        return False
    return set(digits) == {"0"} or digits in TWILIO_WITHHELD


# What a caller or callee field may hold, and nothing else: a phone number in a common notation,
# a tel:/sip:/sips: URI of plain characters, or a withheld spelling (empty or a word above).
# Shell and option syntax ($ ( ) ; & ' ` | < > spaces in a URI, letters in a number) never is.
_PHONE_NOTATION = re.compile(r"^\+?[0-9()./ #*-]{0,62}[0-9][0-9()./ #*-]{0,62}$")
_PARTY_URI = re.compile(
    r"^(?:tel|sips?):[A-Za-z0-9+*#._~-]{1,64}"  # the user part: a number or a name
    r"(?:@(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?)?"  # host[:port]
    r"(?:;[A-Za-z0-9._~=-]{1,64}){0,8}$",  # ;parameters
    re.IGNORECASE,
)


def is_party(text: str) -> bool:
    """Whether a caller or callee field is a phone number, a ``tel:``/``sip:`` URI or a withheld
    spelling - what a telephony system writes there, and never a command or an option."""
    if text.strip().casefold() in WITHHELD_WORDS or not text.strip():
        return True
    return bool(_PHONE_NOTATION.match(text) or _PARTY_URI.match(text))


def normalize_phone(raw: str, region: str) -> str | None:
    """E.164 form of a phone number in any common notation, or ``None`` if it is none.

    Accepts national notations with trunk prefixes (``8 5 214 4500`` in Lithuania), the
    ``00`` international prefix, punctuation of every kind, ``tel:``/``sip:`` URIs as PBXs
    send them, and bare international digits without ``+``.
    """
    if is_withheld(raw):
        return None
    text = _URI_SCHEME.sub("", raw.strip())
    text = text.split("@", 1)[0].split(";", 1)[0].strip()
    if not _DIGITS.search(text):
        return None
    parsed = [number for candidate in _candidates(text) if (number := _parse(candidate, region))]
    # A number in an assigned range wins; failing that, one of a possible length (new or
    # fictitious ranges still identify the same person on both sides of a look-up).
    for check in (phonenumbers.is_valid_number, phonenumbers.is_possible_number):
        for number in parsed:
            if check(number):
                return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return None


def _parse(candidate: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


def _candidates(text: str) -> list[str]:
    """The notation as typed first; then, for bare digits, the same digits read as international."""
    digits = "".join(ch for ch in text if ch.isdigit())
    found = [text]
    if not text.lstrip().startswith(("+", "00")) and len(digits) > 8:
        found.append("+" + digits)
    return found


def normalize_email(raw: str) -> str | None:
    """An e-mail compared case-insensitively after trimming."""
    text = raw.strip().casefold()
    return text if "@" in text else None


def normalize_exact(raw: str) -> str | None:
    """Customer and order ids compare exactly (an empty id is no id)."""
    return raw if raw.strip() else None


@dataclass(frozen=True)
class Subject:
    """Whoever a DSR or a subject hold names: lists of identifiers in any notation."""

    phone_numbers: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    customer_ids: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()

    def normalized(self, default_region: str) -> set[tuple[str, str]]:
        """Pairs of (kind, normalised value) that identify the subject."""
        pairs: set[tuple[str, str]] = set()
        _collect(pairs, "phone", self.phone_numbers, lambda v: normalize_phone(v, default_region))
        _collect(pairs, "email", self.emails, normalize_email)
        _collect(pairs, "customer_id", self.customer_ids, normalize_exact)
        _collect(pairs, "order_id", self.order_ids, normalize_exact)
        return pairs

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "phone_numbers": list(self.phone_numbers),
            "emails": list(self.emails),
            "customer_ids": list(self.customer_ids),
            "order_ids": list(self.order_ids),
        }


def _collect(
    into: set[tuple[str, str]], kind: str, values: Iterable[str], norm: Callable[[str], str | None]
) -> None:
    for value in values:
        normalized = norm(value)
        if normalized is not None:
            into.add((kind, normalized))


@dataclass(frozen=True)
class SubjectKeys:
    """Keyed digests of a subject's identifiers, the only form in which they are looked up."""

    digests: frozenset[bytes] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.digests)


def digest(key: Mac, kind: str, normalized: str) -> bytes:
    """HMAC-SHA256 of one normalised identifier; without the key it cannot be reversed."""
    return digests(key, [(kind, normalized)])[0]


def digests(key: Mac, pairs: Iterable[tuple[str, str]]) -> list[bytes]:
    """The digests of many (kind, normalised value) pairs, in order, in one batch."""
    return key.macs([f"{kind}\x1f{value}".encode() for kind, value in pairs])


def subject_keys(key: Mac, pairs: Iterable[tuple[str, str]]) -> SubjectKeys:
    return SubjectKeys(frozenset(digests(key, pairs)))
