"""The agent: the conversation state machine (agent.py), the turn pipeline
(turn.py), supervised tasks (supervisor.py) and the daemon that wires them
(daemon.py).

Nothing is imported here on purpose: importing ``edge_agent.agent.turn`` must
not pull in audio devices and models. Import from the modules:
``from edge_agent.agent.daemon import Daemon, run``.
"""
