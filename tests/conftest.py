"""Shared pytest setup. Fixture modules live beside the tests (speech.py,
fakecloud.py, alsa.py) and are imported where used."""
