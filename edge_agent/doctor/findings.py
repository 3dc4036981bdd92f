"""One line per check: passed, failed (with the fix) or not applicable here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool | None
    """True passed, False failed, None not applicable here (skipped)."""
    detail: str
    fix: str = ""


def ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, False, detail, fix)


def skip(check: str, detail: str) -> Finding:
    return Finding(check, None, detail)


def format_finding(f: Finding) -> str:
    mark = {True: "ok  ", False: "FAIL", None: "skip"}[f.ok]
    line = f"{mark}  {f.check:<12} {f.detail}"
    return line + (f"\n      {'':<12} fix: {f.fix}" if f.fix else "")
