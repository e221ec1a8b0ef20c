"""The small HTML pages the approval links open. Nothing from the query string is echoed except
through `html.escape`, and every page forbids scripts, framing and referrers (the URL carries
the task token)."""

from __future__ import annotations

import html

from clinrisk.registry.approval import Decision, DecisionLink

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_VERB = {"approve": "Approve", "reject": "Reject"}


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )


def confirm(link: DecisionLink) -> str:
    """GET: a valid link asks for a click before it acts, so that mail scanners and link
    previews, which follow links, cannot decide a promotion. The form posts to this same URL."""
    verb = _VERB[link.decision]
    return _page(
        f"{verb} this model?",
        f"<p>Press the button to {html.escape(link.decision)} promoting the model of this retraining run.</p>"
        f"<form method=post><button type=submit>{html.escape(verb)}</button></form>",
    )


def recorded(decision: Decision) -> str:
    text = (
        "Approved: the run continues and promotes the model."
        if decision == "approve"
        else "Rejected: the model is not promoted; the champion keeps serving."
    )
    return _page("Decision recorded", f"<p>{html.escape(text)}</p>")


def refused(title: str, message: str) -> str:
    return _page(title, f"<p>{html.escape(message)}</p>")
