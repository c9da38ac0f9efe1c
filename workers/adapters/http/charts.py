"""Server-rendered SVG charts (no script, no CDN): bars per day, a few series stacked, in the
reader's language - days and numbers as their locale writes them, and a legend in HTML that
wraps however long its names are in that language."""

from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

from ...i18n import Localizer

WIDTH, HEIGHT, PAD = 900, 150, 28
COLOURS = ("#2b6cb0", "#c05621", "#9b2c2c", "#6b46c1", "#2f855a")


def bar_chart(
    l10n: Localizer, title: str, days: list[date], rows: dict[str, list[float]], unit: str = ""
) -> Markup:
    """Stacked bars, one per day, the largest total as the scale, and a legend below."""
    totals = [sum(values[i] for values in rows.values()) for i in range(len(days))]
    top = max(totals, default=0.0) or 1.0
    slot = (WIDTH - 2 * PAD) / max(1, len(days))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 20}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" stroke="#999"/>',
        f'<text x="{PAD}" y="12" font-size="11">{_number(l10n, top)}{escape(unit)}</text>',
    ]
    for i, day in enumerate(days):
        base = float(HEIGHT)
        for (name, values), colour in zip(rows.items(), COLOURS, strict=False):
            height = (HEIGHT - 20) * values[i] / top
            if height <= 0:
                continue
            base -= height
            x, width = PAD + i * slot + 1, max(1.0, slot - 2)
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(l10n.day(day))} '
                f"{escape(name)}: {_number(l10n, values[i])}{escape(unit)}</title></rect>"
            )
        if i % 7 == 0 or (i == len(days) - 1 and i % 7 > 2):
            parts.append(
                f'<text x="{PAD + i * slot:.1f}" y="{HEIGHT + 14}" font-size="10">'
                f"{escape(l10n.short_day(day))}</text>"
            )
    parts.append("</svg>")
    parts.append('<ul class="legend">')
    for name, colour in zip(rows, COLOURS, strict=False):
        parts.append(
            '<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true" '
            f'xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10" fill="{colour}"/>'
            f"</svg>{escape(name)}</li>"
        )
    parts.append("</ul>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def gauge(label: str, part: int, whole: int, empty: str) -> Markup:
    """A horizontal bar: ``part`` of ``whole`` (e.g. requests answered on time); ``empty``
    says that there is no whole yet."""
    share = part / whole if whole else 0.0
    text = f"{escape(label)}: {part}/{whole}" if whole else f"{escape(label)}: {escape(empty)}"
    return Markup(  # noqa: S704 - the label is escaped, the rest are numbers
        f'<svg class="gauge" viewBox="0 0 300 26" role="img" aria-label="{escape(label)}" '
        'xmlns="http://www.w3.org/2000/svg">'
        '<rect x="0" y="4" width="300" height="18" fill="#e2e8f0"/>'
        f'<rect x="0" y="4" width="{300 * share:.1f}" height="18" fill="#2f855a"/>'
        f'<text x="6" y="17" font-size="12">{text}</text></svg>'
    )


def _number(l10n: Localizer, value: float) -> str:
    return l10n.number(value, 0 if value >= 10 or value == int(value) else 1)
