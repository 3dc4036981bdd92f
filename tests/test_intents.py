"""Local intents and device tools: English commands to tool calls and spoken replies."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.intents import LocalIntents, Timers, Toolbox, device_tools, vocabulary
from edge_agent.intents.local import MAX_COMMAND_CHARS, clean
from edge_agent.intents.phrases import normalize, parse_duration, say_duration


@dataclass
class Speaker:
    """Stands in for the agent, which implements the Device protocol."""

    volume: float = 0.5
    online: bool = True
    last_answer: str = ""
    calls: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.calls.append("stop")

    def set_muted(self, muted: bool) -> None:
        self.calls.append(f"muted={muted}")


NOW = datetime(2026, 11, 21, 15, 5)


@pytest.fixture
def speaker() -> Speaker:
    return Speaker()


@pytest.fixture
def timers(tmp_path: Path) -> Timers:
    return Timers(tmp_path / "timers.json", lambda t: None)


@pytest.fixture
def intents(speaker: Speaker, timers: Timers) -> LocalIntents:
    return LocalIntents(device_tools(speaker, timers, now=lambda: NOW))


def say(intents: LocalIntents, text: str) -> str | None:
    return asyncio.run(asyncio.wait_for(intents.answer(text), 10))


@pytest.mark.parametrize(("text", "expected"), [
    ("What time is it?", ("get_time", {})),
    ("hey, what's the time please", ("get_time", {})),
    ("What's the date today?", ("get_date", {})),
    ("what day is it", ("get_date", {})),
    ("Set a timer for 5 minutes.", ("set_timer", {"seconds": 300.0, "label": ""})),
    ("set a timer for five minutes", ("set_timer", {"seconds": 300.0, "label": ""})),
    ("set a ten second timer", ("set_timer", {"seconds": 10.0, "label": ""})),
    ("Could you set a timer for one hour and thirty minutes",
     ("set_timer", {"seconds": 5400.0, "label": ""})),
    ("set a timer for twenty-five minutes", ("set_timer", {"seconds": 1500.0, "label": ""})),
    ("half an hour timer", ("set_timer", {"seconds": 1800.0, "label": ""})),
    ("set a timer for one and a half minutes", ("set_timer", {"seconds": 90.0, "label": ""})),
    ("set a pasta timer for 10 minutes", ("set_timer", {"seconds": 600.0, "label": "pasta"})),
    ("set a timer for 2 minutes called eggs",
     ("set_timer", {"seconds": 120.0, "label": "eggs"})),
    ("remind me in 20 minutes", ("set_timer", {"seconds": 1200.0, "label": ""})),
    ("cancel the pasta timer", ("cancel_timer", {"label": "pasta"})),
    ("cancel the timer", ("cancel_timer", {"label": ""})),
    ("cancel all timers", ("cancel_timer", {"label": ""})),
    ("how much time is left", ("timer_status", {"label": ""})),
    ("how much time is left on the pasta timer", ("timer_status", {"label": "pasta"})),
    ("what timers do I have", ("timer_status", {"label": ""})),
    ("Volume to 30%", ("set_volume", {"percent": 30})),
    ("volume 5", ("set_volume", {"percent": 50})),
    ("volume to 5 percent", ("set_volume", {"percent": 5})),
    ("turn up the volume", ("change_volume", {"direction": "up"})),
    ("turn down the sound", ("change_volume", {"direction": "down"})),
    ("make it louder", ("change_volume", {"direction": "up"})),
    ("set timer for 5 minutes", ("set_timer", {"seconds": 300.0, "label": ""})),
    ("set a timer 3 minutes", ("set_timer", {"seconds": 180.0, "label": ""})),
    ("how much longer", ("timer_status", {"label": ""})),
    ("set the volume to thirty percent", ("set_volume", {"percent": 30})),
    ("max volume", ("set_volume", {"percent": 100})),
    ("turn it up", ("change_volume", {"direction": "up"})),
    ("louder please", ("change_volume", {"direction": "up"})),
    ("turn the volume down", ("change_volume", {"direction": "down"})),
    ("a bit quieter", ("change_volume", {"direction": "down"})),
    ("Stop!", ("stop", {})),
    ("stop the alarm", ("stop", {})),
    ("never mind", ("stop", {})),
    ("mute the microphone", ("mute", {})),
    ("are you online", ("network_status", {})),
    ("Is the internet working?", ("network_status", {})),
    ("repeat that", ("repeat_last_answer", {})),
    ("say that again please", ("repeat_last_answer", {})),
])
def test_commands_match_their_tool(intents: LocalIntents, text: str, expected) -> None:
    assert intents.match(text) == expected


@pytest.mark.parametrize("text", [
    "what time is it in Tokyo",
    "what's the weather",
    "tell me a joke",
    "set a timer",  # no length: the LLM asks back
    "stop the war in my head",
    "how loud is a jet engine",
    "who won the game yesterday",
    "what is the time difference between London and New York",
    "what is the volume of a sphere",
    "how much time is left in the game",
    "what is the date of easter",
    "repeat after me hello",
    "cancel my subscription",
    "set a timer for the oven",
    "",
])
def test_everything_else_is_not_local(intents: LocalIntents, text: str) -> None:
    assert intents.match(text) is None
    assert say(intents, text) is None


def test_time_and_date_replies(intents: LocalIntents) -> None:
    assert say(intents, "what time is it") == "It's 3:05 PM."
    assert say(intents, "what's the date") == "Today is Saturday, November 21, 2026."


@pytest.mark.parametrize(("hour", "minute", "spoken"), [
    (0, 5, "It's 12:05 AM."), (11, 59, "It's 11:59 AM."), (12, 0, "It's 12:00 PM."),
    (23, 30, "It's 11:30 PM."),
])
def test_time_around_noon_and_midnight(speaker: Speaker, timers: Timers, hour: int,
                                       minute: int, spoken: str) -> None:
    at = datetime(2026, 1, 1, hour, minute)
    intents = LocalIntents(device_tools(speaker, timers, now=lambda: at))
    assert say(intents, "what's the time") == spoken


def test_timer_intents_act_on_the_timers(intents: LocalIntents, timers: Timers) -> None:
    assert say(intents, "set a pasta timer for ten minutes") == "Pasta timer set for 10 minutes."
    assert say(intents, "set a 5 minute timer") == "Timer set for 5 minutes."
    assert [(t.label, t.duration) for t in timers.remaining()] == [("", 300), ("pasta", 600)]
    status = say(intents, "how much time is left")
    assert "on the 5 minute timer" in status and "on the pasta timer" in status
    assert say(intents, "cancel the pasta timer") == "Cancelled the pasta timer."
    assert say(intents, "cancel the eggs timer") == "There is no eggs timer."
    assert say(intents, "cancel the timer") == "Cancelled the 5 minute timer."
    assert say(intents, "how much time is left") == "There are no timers running."


def test_volume_intents_change_the_device(intents: LocalIntents, speaker: Speaker) -> None:
    assert say(intents, "volume to 30 percent") == "Volume 30 percent."
    assert speaker.volume == pytest.approx(0.3)
    say(intents, "louder")
    assert speaker.volume == pytest.approx(0.4)
    say(intents, "volume to 95")
    say(intents, "turn it up")
    assert speaker.volume == 1.0


def test_stop_is_silent_and_mute_is_spoken(intents: LocalIntents, speaker: Speaker) -> None:
    assert say(intents, "stop") == ""
    assert "Microphone off" in say(intents, "mute")
    assert speaker.calls == ["stop", "muted=True"]


def test_online_and_repeat_read_the_device(intents: LocalIntents, speaker: Speaker) -> None:
    assert say(intents, "are you online") == "I'm online."
    speaker.online = False
    assert "offline" in say(intents, "are you online")
    assert say(intents, "repeat that") == "I haven't said anything yet."
    speaker.last_answer = "Paris is the capital of France."
    assert say(intents, "say that again") == "Paris is the capital of France."


def test_llm_tool_calls_use_the_same_tools(speaker: Speaker, timers: Timers) -> None:
    tools = device_tools(speaker, timers, now=lambda: NOW)
    schemas = {s["function"]["name"]: s for s in tools.schemas()}
    assert set(schemas) == {"get_time", "get_date", "set_timer", "cancel_timer", "timer_status",
                            "set_volume", "change_volume", "stop", "mute", "network_status",
                            "repeat_last_answer"}
    assert schemas["set_timer"]["function"]["parameters"]["required"] == ["seconds"]
    json.dumps(schemas)  # what goes to the API must be plain JSON

    async def calls() -> list[str]:
        return [await tools.call("set_timer", '{"seconds": 90, "label": "tea"}'),
                await tools.call("change_volume", {"direction": "sideways"}),
                await tools.call("set_timer", '{"seconds": -5}')]

    replies = asyncio.run(asyncio.wait_for(calls(), 10))
    assert replies[0] == "Tea timer set for 1 minute and 30 seconds."
    status = asyncio.run(asyncio.wait_for(
        tools.call("timer_status", {"label": "The Tea Timer"}), 10))
    assert status.endswith("left on the tea timer.")
    assert replies[1].startswith("error:")
    assert "24 hours" in replies[2]
    assert [t.label for t in timers.remaining()] == ["tea"]


def test_intents_skip_tools_the_toolbox_lacks() -> None:
    intents = LocalIntents(Toolbox())
    assert intents.match("what time is it") is None
    assert "offline" in intents.offline_help()


def test_offline_help_names_what_still_works(intents: LocalIntents) -> None:
    help_text = intents.offline_help()
    assert help_text.startswith("I'm offline right now")
    assert "tell the time" in help_text and "set timers" in help_text
    failing = intents.offline_help(online=True)
    assert "offline" not in failing and failing.endswith(help_text.split(". ", 1)[1])


VOSK_STYLE = [  # what an English Vosk model writes: lowercase words, numbers spelled out
    "what time is it", "what's the date today", "set a timer for five minutes",
    "set a ten second timer", "set a pasta timer for twenty five minutes",
    "set a timer for one hour and thirty minutes", "how much time is left on the pasta timer",
    "cancel the timer", "volume to thirty percent", "turn it up", "a bit quieter", "stop",
    "mute the microphone", "are you online", "say that again", "could you set a timer for "
    "half an hour please",
]


@pytest.mark.parametrize("text", VOSK_STYLE)
def test_vocabulary_covers_the_commands(intents: LocalIntents, text: str) -> None:
    assert intents.match(text) is not None
    assert set(text.split()) <= set(vocabulary())


def test_unknown_words_from_a_grammar_never_make_a_command(intents: LocalIntents) -> None:
    assert "[unk]" in vocabulary()
    assert intents.match("what time is it [unk]") is None
    assert intents.match("set a timer for [unk] minutes") is None


@pytest.mark.parametrize(("text", "normalized"), [
    ("Set a timer for Five minutes!", "set a timer for 5 minutes"),
    ("twenty-five", "25"),
    ("one hundred and twenty seconds", "120 seconds"),
    ("a hundred", "100"),
    ("What’s the time?", "what's the time"),
    ("Volume to 30%.", "volume to 30 percent"),
    ("it is 3.5 minutes.", "it is 3.5 minutes"),
])
def test_normalize(text: str, normalized: str) -> None:
    assert normalize(text) == normalized


@pytest.mark.parametrize(("text", "seconds"), [
    ("5 minutes", 300), ("an hour", 3600), ("1 hour and 30 minutes", 5400),
    ("2 minutes 10 seconds", 130), ("half an hour", 1800), ("1 and a half hours", 5400),
    ("90 secs", 90), ("3.5 minutes", 210), ("no time at all", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("seconds", "spoken"), [
    (1, "1 second"), (45, "45 seconds"), (60, "1 minute"), (250, "4 minutes and 10 seconds"),
    (3600, "1 hour"), (5400, "1 hour and 30 minutes"), (7260, "2 hours and 1 minute"),
])
def test_say_duration(seconds: float, spoken: str) -> None:
    assert say_duration(seconds) == spoken


@pytest.mark.parametrize(("text", "cleaned"), [
    ("what time is it please", "what time is it"),
    ("what time is it right now thank you", "what time is it"),
    ("stop it for me now please thanks", "stop it"),
    ("could you please set a timer for 5 minutes now", "set a timer for 5 minutes"),
    ("please", "please"), ("thank you", "thank you"),  # never the whole utterance
    ("what time is it right", "what time is it right"),
])
def test_filler_is_stripped(text: str, cleaned: str) -> None:
    assert clean(text) == cleaned


def test_long_utterances_are_matched_in_linear_time(intents: LocalIntents) -> None:
    """Filler that fails to end the utterance was retried from every word; an
    utterance past MAX_COMMAND_CHARS is not even looked at."""
    def per_char(words: int) -> float:
        text = "thank you " * words + "x"
        start = time.perf_counter()
        assert clean(text).endswith("you x")
        return (time.perf_counter() - start) / len(text)

    small = min(per_char(500) for _ in range(3))
    large = per_char(8000)
    print(f"clean: {small * 1e6:.2f} us/char at 5 KB, {large * 1e6:.2f} at 80 KB")
    assert large < 5 * small + 2e-6  # quadratic: 16x
    long = "what time is it " + "please " * (MAX_COMMAND_CHARS // 7)
    assert len(long) > MAX_COMMAND_CHARS
    assert intents.match(long) is None
    assert intents.match("what time is it " + "please " * 20) == ("get_time", {})
    assert intents.match("thank you " * 100_000) is None


def test_timer_tool_refuses_past_the_caps(timers: Timers, speaker: Speaker) -> None:
    from edge_agent.intents.timers import MAX_LABEL_CHARS, MAX_TIMERS

    tools = device_tools(speaker, timers, now=lambda: NOW)
    reply = asyncio.run(tools.call("set_timer", {"seconds": 60, "label": "x" * 1_000_000}))
    assert reply == f"A timer name can be at most {MAX_LABEL_CHARS} characters."
    for n in range(MAX_TIMERS):
        asyncio.run(tools.call("set_timer", {"seconds": 60, "label": f"t{n}"}))
    reply = asyncio.run(tools.call("set_timer", {"seconds": 60}))
    assert reply == f"I can run at most {MAX_TIMERS} timers at once."
    assert len(timers.remaining()) == MAX_TIMERS


@pytest.mark.parametrize(("labels", "text"), [
    ([""], "Your timer is done."),
    (["pasta"], "Your pasta timer is done."),
    (["", ""], "2 timers are done."),
    (["tea", ""], "2 timers are done: tea and 1 more."),
    (["a", "b", "c"], "3 timers are done: a, b and c."),
    ([f"t{n}" for n in range(300)], "300 timers are done: t0, t1, t2 and 297 more."),
])
def test_timers_ringing_together_are_one_announcement(labels: list[str], text: str) -> None:
    from edge_agent.intents.device import ring_announcement
    from edge_agent.intents.timers import Timer

    assert ring_announcement([Timer(label, 60, 0) for label in labels]) == text
