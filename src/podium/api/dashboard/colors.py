"""The status colours of the dashboard, and the contrast check that keeps them readable.

Text on every status colour must reach WCAG AA (4.5:1); a test computes it for each.
"""

from __future__ import annotations

TEXT = "#111827"
# Light fills under dark text; the status is also written out, never told by colour alone.
STATUS_COLORS: dict[str, str] = {
    "pending": "#e5e7eb",
    "queued": "#e5e7eb",
    "ready": "#fde68a",
    "running": "#93c5fd",
    "waiting": "#c4b5fd",
    "succeeded": "#86efac",
    "degraded": "#fcd34d",
    "failed": "#fca5a5",
    "timed_out": "#fdba74",
    "expired": "#fdba74",
    "cancelled": "#d1d5db",
    "skipped": "#f3f4f6",
    "compensated": "#f9a8d4",
    "lost": "#d1d5db",
}


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_color: str) -> float:
    """The relative luminance of `#rrggbb` (WCAG 2)."""
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours, from 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def status_css() -> str:
    """One rule per status, for the stylesheet the pages load."""
    return "\n".join(
        f".st-{name}{{fill:{color};background:{color};color:{TEXT}}}"
        for name, color in STATUS_COLORS.items()
    )
