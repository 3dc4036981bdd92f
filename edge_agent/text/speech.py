"""Text a model wrote, made speakable: markdown, links, code and emoji removed.

The system prompt asks for plain spoken sentences, but models still send
``**bold**``, bullet lists and the odd emoji; read aloud they become "asterisk
asterisk" or silence-length pauses in the TTS.
"""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"```[^\n`]*"), " "),                                  # code fences (+ language)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),                    # images: alt text
    (re.compile(r"\[([^\]]+)\]\((?:[^)\s]+)(?:\s+\"[^\"]*\")?\)"), r"\1"),  # links: their text
    (re.compile(r"<(?:https?://|mailto:)[^>]+>"), " "),                # autolinks
    (re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE), " "),     # bare URLs
    (re.compile(r"</?[A-Za-z][^>]*>"), " "),                           # HTML tags (<br>, <b>)
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE), ""),              # headings
    (re.compile(r"^\s{0,3}>\s?", re.MULTILINE), ""),                   # block quotes
    (re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.MULTILINE), ""),  # list markers
    (re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE), " "),         # horizontal rules
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),             # **bold**, __bold__
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),    # _italic_
    (re.compile(r"~~(.+?)~~"), r"\1"),                                 # ~~strike~~
    (re.compile(r"`([^`]*)`"), r"\1"),                                 # `code`
    (re.compile(r"\s*\|\s*"), ", "),                                   # table cells
    (re.compile(r"(?<=\d)\s*[*×]\s*(?=\d)"), " times "),               # 2*3
    (re.compile(r"[*`~]+|(?<!\w)#+(?=\s|$)"), " "),                    # stray markup (not C#)
]

_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags, skin tones
    "\u2600-\u27bf"          # misc symbols and dingbats (☀ ✅ ✨)
    "\u2b00-\u2bff"          # stars and arrows (⭐)
    "\u2190-\u21ff"          # arrows
    "\u2300-\u23ff"          # technical (⌚ ⏰)
    "\ufe00-\ufe0f"          # variation selectors
    "\u200d"                 # zero-width joiner inside emoji sequences
    "\U000e0000-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_REPEATED_COMMAS = re.compile(r",(?:\s*,)+")
_LEADING_PUNCT = re.compile(r"^[\s,;:]+")
_SPACES = re.compile(r"\s+")


def clean_for_speech(text: str) -> str:
    """``text`` without markdown, links, code marks and emoji, on one line."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    text = _EMOJI.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMAS.sub(",", text)
    text = _LEADING_PUNCT.sub("", text)
    return text.strip().rstrip(",;")


def speakable(text: str) -> bool:
    """True if ``text`` holds anything a voice would say (a letter or a digit)."""
    return any(ch.isalnum() for ch in text)
