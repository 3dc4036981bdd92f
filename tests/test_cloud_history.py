"""Conversation: history bounded by turns and characters, forgotten when idle,
and sent to the model on the next turn."""

from __future__ import annotations

from edge_agent.cloud import CloudClient, CloudLLM, Conversation
from edge_agent.config import CloudSettings, Secret
from edge_agent.intents.tools import Toolbox
from edge_agent.testbed.fakecloud import FAKE_KEY, FakeCloud, run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conversation(**settings: object) -> tuple[Conversation, Clock]:
    clock = Clock()
    return Conversation(CloudSettings(system_prompt="Be brief.", **settings), clock=clock), clock


def pairs(messages: list[dict]) -> list[tuple[str, str]]:
    """The (user, assistant) exchanges between the system prompt and the question."""
    middle = messages[1:-1]
    return [(u["content"], a["content"]) for u, a in zip(middle[::2], middle[1::2], strict=True)]


def test_system_prompt_history_then_the_question() -> None:
    convo, _ = conversation()
    convo.add_exchange("who wrote hamlet", "Shakespeare.")
    assert convo.messages("when was he born") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "who wrote hamlet"},
        {"role": "assistant", "content": "Shakespeare."},
        {"role": "user", "content": "when was he born"},
    ]


def test_history_is_bounded_by_turns() -> None:
    convo, _ = conversation(history_turns=3)
    for n in range(10):
        convo.add_exchange(f"q{n}", f"a{n}")
    assert pairs(convo.messages("next")) == [("q7", "a7"), ("q8", "a8"), ("q9", "a9")]
    assert len(convo) == 3


def test_history_is_bounded_by_characters_keeping_the_newest() -> None:
    convo, _ = conversation(history_turns=10, history_chars=50)
    for n in range(5):
        convo.add_exchange(f"question {n}", "x" * 10)  # 20 characters an exchange
    assert pairs(convo.messages("next")) == [("question 3", "x" * 10), ("question 4", "x" * 10)]


def test_an_exchange_larger_than_the_budget_is_not_sent() -> None:
    convo, _ = conversation(history_chars=10)
    convo.add_exchange("a long question", "a long answer")
    assert pairs(convo.messages("next")) == []


def test_history_is_forgotten_after_idle() -> None:
    convo, clock = conversation(history_idle_seconds=300)
    convo.add_exchange("my name is Ada", "Hello Ada.")
    clock.now += 299
    assert pairs(convo.messages("what is my name")) == [("my name is Ada", "Hello Ada.")]
    convo.add_exchange("what is my name", "Ada.")
    clock.now += 301
    assert convo.messages("what is my name")[1:] == [
        {"role": "user", "content": "what is my name"}]
    assert len(convo) == 0


def test_no_history_when_disabled() -> None:
    convo, _ = conversation(history_turns=0)
    convo.add_exchange("q", "a")
    assert len(convo.messages("next")) == 2


def test_nothing_spoken_records_nothing() -> None:
    convo, _ = conversation()
    convo.add_exchange("tell me a story", "")
    convo.add_exchange("", "Sorry?")
    assert len(convo) == 0


def test_no_system_message_when_the_prompt_is_empty() -> None:
    convo = Conversation(CloudSettings(system_prompt=""))
    assert convo.messages("hi") == [{"role": "user", "content": "hi"}]


def test_clear() -> None:
    convo, _ = conversation()
    convo.add_exchange("q", "a")
    convo.clear()
    assert len(convo) == 0


def test_the_second_turn_sends_the_first(fake_cloud: FakeCloud) -> None:
    fake_cloud.queue_replies("Shakespeare wrote it.", "In 1564.")
    settings = fake_cloud.settings(history_turns=4)
    convo = Conversation(settings)

    async def scenario() -> None:
        async with CloudClient(settings, Secret(FAKE_KEY)) as client:
            llm = CloudLLM(client)
            for question in ("who wrote hamlet", "when was he born"):
                reply = "".join([d async for d in llm.reply(convo.messages(question),
                                                            Toolbox())])
                convo.add_exchange(question, reply)

    run(scenario())
    first, second = fake_cloud.requests_for("llm")
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert second.messages[1:] == [
        {"role": "user", "content": "who wrote hamlet"},
        {"role": "assistant", "content": "Shakespeare wrote it."},
        {"role": "user", "content": "when was he born"},
    ]
    assert second.messages[0] == {"role": "system", "content": settings.system_prompt}
