"""The failover matrix: every fault of the fake cloud at every stage, each of
which must end in audible speech (the tests check it, bench failover times it)."""

from __future__ import annotations

REPLY = "It is sunny and warm today. Tomorrow will bring some rain."
# LLM faults "mid" strike after this many tokens: the first sentence is complete
# (the chunker confirms it on the next word) and on its way to the speaker.
MID = 7

# (stage, fault kind or "refused", fault parameters)
BEFORE_ANY_TEXT = [
    ("refused", {}),
    ("status", {"status": 500}),
    ("status", {"status": 503}),
    ("rate_limit", {"retry_after": 1}),
    ("disconnect", {}),
    ("stall_first", {}),
]
CASES = [
    *[("stt", kind, params) for kind, params in BEFORE_ANY_TEXT],
    ("stt", "stall_mid", {}),
    ("stt", "reset_mid", {}),
    ("stt", "malformed_json", {}),
    *[("llm", kind, params) for kind, params in BEFORE_ANY_TEXT],
    ("llm", "malformed_sse", {"after": 0}),
    ("llm", "stall_mid", {"after": MID}),
    ("llm", "reset_mid", {"after": MID}),
    ("llm", "malformed_sse", {"after": MID}),
    ("llm", "malformed_json", {"after": MID}),
    *[("tts", kind, params) for kind, params in BEFORE_ANY_TEXT],
    ("tts", "stall_mid", {"after": 2}),
    ("tts", "reset_mid", {"after": 2}),
    ("tts", "wrong_format", {"variant": "wav"}),
    ("tts", "wrong_format", {"variant": "mp3"}),
]
