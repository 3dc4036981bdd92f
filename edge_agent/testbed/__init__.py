"""The speaker's world without hardware or cloud, shared by the tests and by
`edge-agent bench`: a real OpenAI-compatible server on loopback with fault
injection (``fakecloud``, the failover matrix in ``fault_cases``), the Realtime
transcription server (``fakerealtime``), a Mosquitto broker runner (``broker``),
ALSA file-PCM devices (``alsa``), the daemon on .wav devices (``harness``, in a
room that hears itself: ``echo_room``), turn rigs (``rig``), the daemon as
systemd runs it (``service``), several speakers on one broker (``fleet``), the
Korean Vosk model (``vosk_ko``), and waiting on other threads (``wait``,
``recorder``).

It lives in the package, not in ``tests/``, so that the benchmarks run from an
installed package without the source tree's tests. It never imports pytest
(the tests turn ``UnavailableError`` into a failure), and the daemon never
imports it (tests/test_footprint.py checks).
"""


class UnavailableError(RuntimeError):
    """A part of the test bed is missing on this machine (a program, a model)."""
