"""Local intents: short English commands answered on the device through the
device tools, with no cloud round trip.

Patterns match the whole (normalized) utterance, never a part of it, because
with ``offline.prefer_local`` they run before the LLM even when online: "what
time is it" is ours, "what time is it in Tokyo" belongs to the LLM.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.intents.phrases import DURATION, NUMBER_WORDS, normalize, parse_duration
from edge_agent.intents.tools import Toolbox

log = logging.getLogger(__name__)

# Politeness and filler around a command: "hey, could you please ... for me now".
_PREFIX = re.compile(
    r"^(?:(?:ok|okay|hey|so|um|uh|please|now|and|then|just|"
    r"(?:can|could|would|will) you|i want you to|i'd like you to|i (?:want|need) to|"
    r"i'd like to|tell me|do you know|let me know)\s+)+")
_SUFFIXES = tuple(phrase.split() for phrase in (
    "right now", "thank you", "for me", "please", "now", "thanks", "again"))
"""Filler after a command, longest first: stripped word by word from the end."""
MAX_COMMAND_CHARS = 200
"""A longer utterance is no local command (the longest is under 80 characters) and
goes to the LLM; matching it would only cost time."""
_LABEL = r"(?P<label>[a-z]+(?: [a-z]+)?)"
_NAME = r"(?P<name>[a-z]+(?: [a-z]+)?)"


@dataclass(frozen=True)
class _Intent:
    tool: str
    patterns: tuple[re.Pattern[str], ...]
    arguments: Callable[[re.Match[str]], dict[str, Any] | None]
    """Tool arguments from the match; None means "not this intent after all"."""


def _timer_arguments(m: re.Match[str]) -> dict[str, Any] | None:
    seconds = parse_duration(m["duration"])
    if seconds is None:
        return None
    groups = m.groupdict()
    label = (groups.get("label") or groups.get("name") or "").strip()
    return {"seconds": seconds, "label": label}


def _volume_arguments(m: re.Match[str]) -> dict[str, Any]:
    level = int(m["level"])
    # "volume 5" means the 0-10 scale people know from other speakers; "volume 5
    # percent" and "volume 30" mean percent.
    percent = level * 10 if level <= 10 and not m["percent"] else level
    return {"percent": min(100, percent)}


def _label(m: re.Match[str]) -> dict[str, Any]:
    label = (m.groupdict().get("label") or "").strip()
    return {"label": "" if label in ("my", "the", "all", "all the", "all my") else label}


def _no_arguments(m: re.Match[str]) -> dict[str, Any]:
    return {}


def _i(tool: str, *patterns: str,
       arguments: Callable[[re.Match[str]], dict[str, Any] | None] = _no_arguments) -> _Intent:
    """An intent whose patterns each match a whole cleaned utterance."""
    return _Intent(tool, tuple(re.compile(f"^(?:{p})$") for p in patterns), arguments)


_SET = r"(?:set|start|create|make|add|put on|give me)"
_ARTICLE = r"(?:a |an |another |the |my )?"
_D = rf"(?P<duration>{DURATION})"
_TIMER_LABEL = r"(?:(?:my |the |all |all the |all my )?(?P<label>[a-z]+) )?timers?"

INTENTS: tuple[_Intent, ...] = (
    _i("stop", r"stop(?: it| that| talking| the (?:alarm|timer|music|sound))?",
       r"(?:be )?quiet", r"shut up", r"silence", r"enough", r"never ?mind", r"cancel"),
    _i("mute", r"mute(?: yourself| the (?:microphone|mic))?", r"stop listening",
       r"turn off (?:the |your )?(?:microphone|mic)"),
    _i("set_timer",
       rf"(?:{_SET} )?{_ARTICLE}(?:{_LABEL} )?timer (?:for|of|in) {_D}"
       rf"(?: (?:called|named|labeled|for) {_NAME})?",
       rf"(?:{_SET} )?{_ARTICLE}{_D} (?:{_LABEL} )?timer(?: (?:called|named|for) {_NAME})?",
       rf"(?:remind me|wake me(?: up)?|alert me|ring) in {_D}",
       rf"(?:{_SET} )?{_ARTICLE}timer {_D}",
       arguments=_timer_arguments),
    _i("cancel_timer",
       rf"(?:cancel|stop|delete|remove|clear|turn off|kill) {_TIMER_LABEL}",
       arguments=_label),
    _i("timer_status",
       rf"how (?:much (?:time|longer)|long) (?:is |'s )?(?:left|remaining)"
       rf"(?: on {_TIMER_LABEL})?",
       r"how much longer",
       rf"how long until {_TIMER_LABEL} (?:rings|goes off|is done)",
       rf"(?:how's|how is|check|status of) {_TIMER_LABEL}",
       rf"{_TIMER_LABEL} status", r"time (?:left|remaining)",
       r"what timers (?:do i have|are (?:running|set|there))", r"(?:any|list) timers",
       arguments=_label),
    _i("set_volume",
       r"(?:set |change |turn |put )?(?:the )?volume (?:to |at )?(?P<level>\d+)"
       r"(?P<percent> percent)?",
       arguments=_volume_arguments),
    _i("set_volume", r"(?:set |turn )?(?:the )?volume (?:to )?(?:max|maximum|full)",
       r"(?:max|maximum) volume", arguments=lambda m: {"percent": 100}),
    _i("change_volume",
       r"turn (?:it |the volume |the sound )?up(?: the (?:volume|sound))?", r"(?:the )?volume up",
       r"speak up", r"(?:increase|raise) (?:the )?volume",
       r"(?:make it |speak |talk )?(?:a bit |a little )?louder",
       arguments=lambda m: {"direction": "up"}),
    _i("change_volume",
       r"turn (?:it |the volume |the sound )?down(?: the (?:volume|sound))?",
       r"(?:the )?volume down", r"(?:decrease|lower|reduce) (?:the )?volume",
       r"(?:make it |speak |talk )?(?:a bit |a little )?(?:quieter|softer)",
       arguments=lambda m: {"direction": "down"}),
    _i("get_time", r"what time is it", r"what's the time", r"what is the time",
       r"(?:the |current )?time", r"(?:what's |what is )?the current time",
       r"do you have the time"),
    _i("get_date", r"what(?:'s| is) (?:the date|today's date|the date today|today)",
       r"what day is (?:it|today)", r"(?:today's )?date", r"what date is it",
       r"what is the day today"),
    _i("network_status", r"are you (?:online|offline|connected)",
       r"(?:is|are) (?:the )?(?:internet|network|wifi|wi fi|cloud) (?:up|down|working|connected)",
       r"do you have (?:internet|a connection|network)", r"network status",
       r"(?:what's|what is) (?:your|the) (?:network|connection) status"),
    _i("repeat_last_answer", r"repeat(?: that| it| the last answer| what you said)?",
       r"say (?:that|it)(?: again)?", r"what did you (?:just )?say", r"come again", r"pardon",
       r"sorry what"),
)


COMMON_LABELS = ("pasta", "egg", "eggs", "tea", "coffee", "bread", "cake", "oven", "pizza",
                 "rice", "laundry", "kitchen", "potatoes", "bath", "homework")
"""Timer names a grammar-restricted recognizer can hear (free recognition hears any)."""


def vocabulary() -> list[str]:
    """Every word of every command, plus "[unk]": a Vosk grammar restricted to
    what the device can do by itself is faster and far more accurate on a Pi,
    and "[unk]" keeps any other request from sounding like a command."""
    words = {*NUMBER_WORDS, *COMMON_LABELS, "okay", "a", "an", "and", "half"}
    sources = [_PREFIX.pattern, *(" ".join(s) for s in _SUFFIXES),
               *(p.pattern for i in INTENTS for p in i.patterns)]
    for source in sources:
        source = re.sub(r"\?P<\w+>|\[[^\]]*\]|\\.", " ", source)  # group names, classes, escapes
        for word, optional_s in re.findall(r"([a-z']+)(\?)?", source):
            words.add(word)
            if optional_s and word.endswith("s"):
                words.add(word[:-1])  # "hours?" stands for "hour" too
    words = {w for w in words if not w.startswith("'") and (len(w) > 1 or w in ("a", "i"))}
    return [*sorted(words), "[unk]"]


def clean(text: str) -> str:
    """Normalized utterance with polite filler removed."""
    text = normalize(text)
    previous = None
    while previous != text:
        previous = text
        text = _strip_suffix(_PREFIX.sub("", text))
    return text


def _strip_suffix(text: str) -> str:
    """``text`` without trailing filler ("... for me please"). Word by word from the
    end, so linear: a regex anchored at the end retried from every position was
    quadratic ("thank you " x 8000 took 3.3 s)."""
    words = text.split(" ")
    end = len(words)
    while True:
        for phrase in _SUFFIXES:
            start = end - len(phrase)
            if start >= 1 and words[start:end] == phrase:  # never the whole utterance
                end = start
                break
        else:
            return " ".join(words[:end])


class LocalIntents:
    """Answers the commands the device can handle itself."""

    def __init__(self, tools: Toolbox) -> None:
        self.tools = tools

    def match(self, text: str) -> tuple[str, dict[str, Any]] | None:
        """The tool and its arguments for an utterance, or None."""
        if len(text) > MAX_COMMAND_CHARS:
            return None
        said = clean(text)
        for intent in INTENTS:
            if intent.tool not in self.tools:
                continue
            for pattern in intent.patterns:
                m = pattern.match(said)
                arguments = intent.arguments(m) if m else None
                if arguments is not None:
                    return intent.tool, arguments
        return None

    async def answer(self, text: str) -> str | None:
        """The spoken reply, "" when the action speaks for itself (stop), or None
        when the utterance is not a local intent."""
        matched = self.match(text)
        if matched is None:
            return None
        tool, arguments = matched
        log.debug("local intent %s %s for %r", tool, arguments, text)
        reply = await self.tools.call(tool, arguments)
        return "" if tool == "stop" else reply

    def offline_help(self, *, online: bool = False, why: str | None = None) -> str:
        """What to say when the request needs the cloud and the cloud cannot answer:
        offline, or (``online``) reachable but failing; ``why`` replaces that reason."""
        why = why or ("The cloud service is not answering right now" if online
                      else "I'm offline right now")
        can = [what for tool, what in (
            ("get_time", "tell the time"), ("get_date", "give the date"),
            ("set_timer", "set timers"), ("set_volume", "change the volume"),
            ("repeat_last_answer", "repeat my last answer"),
        ) if tool in self.tools]
        if not can:
            return f"{why}, so I can't answer that."
        listed = can[0] if len(can) == 1 else ", ".join(can[:-1]) + " and " + can[-1]
        return f"{why}, so I can't answer that. I can still {listed}."
