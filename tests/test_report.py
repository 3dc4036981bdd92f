"""edge_agent.service.report: the status as people read it, and the lines the
daemon says about itself."""

from __future__ import annotations

from pathlib import Path

from edge_agent.agent.agent import TurnRecord
from edge_agent.service.report import cloud_words, format_status, startup_line

CLOCK = 4119.502  # a monotonic reading hours after boot


def test_turn_latencies_count_from_the_end_of_speech() -> None:
    record = TurnRecord(3, "wake", timings={"end_of_speech": CLOCK, "stt_done": CLOCK + 0.352,
                                            "first_audio": CLOCK + 0.9})
    assert record.to_dict()["latency_ms"] == {"stt_done": 352.0, "first_audio": 900.0}
    assert TurnRecord(4, "wake").to_dict()["latency_ms"] == {}


def status(**changes: object) -> dict:
    base = {
        "state": "idle", "online": True, "muted": False, "microphone": True,
        "wake_models": ["hey_jarvis"], "uptime_s": 18.1, "volume": 0.8, "turns": 1,
        "last_turns": [{"id": 1, "source": "wake", "transcript": "what time is it",
                        "engine": "cloud", "reply": "It's 9:41 PM. " * 20,
                        "reply_engine": "local",
                        "latency_ms": {"stt_done": 352.4, "first_audio": 901.0}}],
        "daemon": {"pid": 4242, "config": "/etc/edge-agent/config.toml",
                   "socket": "/run/edge-agent/control.sock", "version": "0.1.0"},
        "cloud": {"enabled": True, "online": True, "state": "online", "cause": "",
                  "reason": "", "url": "https://api.openai.com/v1"},
    }
    return base | changes


def test_status_text_has_units_words_and_what_was_said() -> None:
    text = format_status(status())
    assert "True" not in text and "False" not in text
    assert "muted: no" in text and "microphone: yes" in text
    assert "uptime: 18 s" in text
    assert "352ms" in text and "901ms" in text and "4119" not in text
    assert "It's 9:41 PM." in text and "…" in text  # the reply, cut
    assert "4242" in text and "/etc/edge-agent/config.toml" in text
    assert "/run/edge-agent/control.sock" in text


def test_the_cloud_line_names_the_cause() -> None:
    assert cloud_words({"state": "online"}) == "cloud online"
    assert "online" not in cloud_words({"state": "checking", "online": True})
    assert cloud_words(None) == "cloud disabled"
    for cause, words in (("no_key", "the API key is missing"),
                         ("key_refused", "the API key was refused"),
                         ("dns", "DNS"), ("refused", "refused"), ("timeout", "in time")):
        line = cloud_words({"state": "offline", "online": False, "cause": cause})
        assert words in line and "online" not in line
        offline = status(cloud={"enabled": True, "state": "offline", "cause": cause})
        assert words in format_status(offline)
    assert "stalled" in cloud_words({"state": "offline", "cause": "", "reason": "stt: stalled"})


def test_the_startup_line_says_what_runs() -> None:
    line = startup_line(config=Path("/etc/edge-agent/config.toml"),
                        engines={"stt": "cloud then vosk", "tts": "piper"},
                        cloud_url="https://api.example/v1")
    for part in ("0.1.0", "/etc/edge-agent/config.toml", "cloud then vosk", "piper",
                 "https://api.example/v1"):
        assert part in line
    assert "built-in defaults" in startup_line(config=None, engines={}, cloud_url="x")
