"""The exception tree. Library errors are converted where they enter our code,
so callers (failover above all) decide by type, never by parsing messages.

    EdgeAgentError
    ├── ConfigError          a config or key file is missing, unreadable or invalid
    ├── AudioDeviceError     a microphone or speaker cannot be opened or vanished
    ├── ModelError           a wake, Vosk or Piper model is missing or unusable
    ├── BusyError            too many requests of one kind in flight (say)
    ├── StateError           a state file (mute, timers) cannot be saved or read
    └── CloudError           a cloud request failed (.stage, .offline, .retry_after, .cause)
        ├── SttCloudError
        ├── LlmCloudError    (.partial: text was already streamed before the break)
        └── TtsCloudError
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Root of every error edge-agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """The configuration cannot be used; ``problems`` lists every finding."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class AudioDeviceError(EdgeAgentError):
    """An audio device could not be found, opened, or stopped delivering."""


class ModelError(EdgeAgentError):
    """A model file is missing or cannot be loaded."""


class BusyError(EdgeAgentError):
    """Refused: as many requests of this kind are in flight as the device allows."""


class StateError(EdgeAgentError):
    """A state file under state_dir could not be saved, read or parsed."""


CAUSES = {
    "no_key": "the API key is missing",
    "key_refused": "the API key was refused",
    "dns": "the service's host name does not resolve (DNS)",
    "refused": "the connection was refused",
    "timeout": "the service did not answer in time",
    "service": "the service reported an error",
    "portal": "a captive portal or proxy answered instead of the service",
    "disabled": "the cloud is disabled in the config (cloud.enabled)",
}
"""Why the cloud cannot be used, by ``CloudError.cause``: the words status and the
log show. The two key causes are the owner's to fix, so the speaker says them."""
KEY_CAUSES = frozenset({"no_key", "key_refused"})


class CloudError(EdgeAgentError):
    """A cloud request failed.

    ``offline`` is True when the failure says the network or service is out of
    reach (refused, DNS, TLS, timeout before any byte), which is what trips the
    circuit breaker; a 4xx about our request is not "offline".

    ``cause`` names the kind of failure for status and notices, one of CAUSES
    (empty when none of them fits).
    """

    stage = "cloud"

    def __init__(
        self,
        reason: str,
        *,
        offline: bool = False,
        retry_after: float | None = None,
        partial: bool = False,
        cause: str = "",
    ) -> None:
        self.reason = reason
        self.cause = cause
        self.offline = offline
        self.retry_after = retry_after
        self.partial = partial
        super().__init__(f"{self.stage}: {reason}")


class SttCloudError(CloudError):
    stage = "stt"


class LlmCloudError(CloudError):
    stage = "llm"


class TtsCloudError(CloudError):
    stage = "tts"
