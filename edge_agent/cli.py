"""The ``edge-agent`` command. Each verb is one small function; the daemon's own
work lives in the packages, not here."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import (
    CONFIG_ENV,
    Settings,
    WakeSettings,
    default_config_path,
    load_config,
    load_config_lines,
)
from edge_agent.errors import AudioDeviceError, ConfigError, EdgeAgentError
from edge_agent.service import control
from edge_agent.service.report import format_status

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

Command = Callable[[argparse.Namespace], int]


def _load_or_report(path: Path | None) -> Settings | None:
    """The settings, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Problems exit 2; warnings (valid, but will not work where the service runs)
    are printed and still exit 0."""
    from edge_agent.config_warnings import config_warnings
    from edge_agent.configfile import locate

    if args.path and args.config and args.path != args.config:
        print("edge-agent: two config files given (PATH and --config); give one",
              file=sys.stderr)
        return EXIT_CONFIG
    path = args.config or args.path or default_config_path()
    try:
        settings, lines = load_config_lines(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    warnings = [locate(w, str(path), lines) for w in config_warnings(settings, str(path))]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counted = f" ({len(warnings)} warning{'s' * (len(warnings) != 1)})" if warnings else ""
    print(f"{settings.source}: OK{counted}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return EXIT_CONFIG
    from edge_agent.agent.daemon import main as run_daemon  # heavy: models, audio

    return run_daemon(settings)


def cmd_wake_test(args: argparse.Namespace) -> int:
    """The configured wake engines over WAV files: a JSON line per detection."""
    if args.config is None and not default_config_path().exists():
        wake = WakeSettings()  # no config here: the shipped defaults
    else:
        settings = _load_or_report(args.config)
        if settings is None:
            return EXIT_CONFIG
        wake = settings.wake
    from edge_agent.wake import filetest  # loads the models

    try:
        read = filetest.run(wake, args.files)
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if read else EXIT_FAILURE


def _control_socket(args: argparse.Namespace) -> Path:
    """The socket to reach: --socket, else the config's, else the usual places. A
    config this user may not read (0640 root:edge-agent) is no reason to fail here."""
    if args.socket:
        return args.socket
    configured = ""
    with contextlib.suppress(ConfigError):
        configured = load_config(args.config or default_config_path()).service.control_socket
    return control.find_socket(configured)


def _ask_daemon(args: argparse.Namespace, command: str, **fields: object) -> dict | None:
    try:
        return control.request(_control_socket(args), command, **fields)
    except control.ControlError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    status = _ask_daemon(args, "status")
    if status is None:
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_simple(args: argparse.Namespace) -> int:
    result = _ask_daemon(args, args.verb)
    if result is None:
        return EXIT_FAILURE
    print({"mute": "muted", "unmute": "unmuted", "listen": "listening"}[args.verb])
    return EXIT_OK


def cmd_say(args: argparse.Namespace) -> int:
    text = " ".join(args.text).strip()
    if not text:
        print("edge-agent: nothing to say", file=sys.stderr)
        return EXIT_CONFIG
    if args.output and not args.offline:
        print("edge-agent: --output needs --offline (the running daemon speaks on its own "
              "speaker)", file=sys.stderr)
        return EXIT_CONFIG
    if args.offline:
        return say_offline(args, text)
    result = _ask_daemon(args, "say", text=text)
    if result is None:
        return EXIT_FAILURE
    return EXIT_OK if result.get("spoken") else EXIT_FAILURE


def say_offline(args: argparse.Namespace, text: str) -> int:
    """Piper into a Player, the daemon's own output path, without a daemon: checks
    the voice and the speaker, or makes a WAV (``--output x.wav``)."""
    import asyncio

    from edge_agent.audio import Player  # PortAudio and onnxruntime only for this verb
    from edge_agent.events import EventBus
    from edge_agent.offline import PiperTTS, default_piper_voice

    # Built-in defaults only when no config was named and the usual one is absent.
    path = args.config or default_config_path()
    settings = Settings() if args.config is None and not path.exists() else (
        _load_or_report(path))
    if settings is None:
        return EXIT_CONFIG

    async def speak(tts: PiperTTS, player: Player) -> None:
        stream = player.stream(engine=tts.name, events=False)
        async for pcm in tts.synthesize(text):
            stream.write(pcm, tts.sample_rate)
        stream.end()
        await stream.drained()

    try:
        tts = PiperTTS(default_piper_voice(settings.offline))
        player = Player(str(args.output or settings.audio.output), EventBus(),
                        volume=settings.audio.volume)
        player.open()
        try:
            asyncio.run(speak(tts, player))
        finally:
            player.close()
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    """One turn from typed text here, without the daemon: the answer path alone."""
    import asyncio

    from edge_agent.agent.ask import ask  # models, PortAudio and the cloud client

    text = " ".join(args.text).strip()
    if not text:
        print("edge-agent: nothing to ask", file=sys.stderr)
        return EXIT_CONFIG
    settings = _settings_or_defaults(args.config)
    if settings is None:
        return EXIT_CONFIG
    output = str(args.output) if args.output else None
    try:
        result = asyncio.run(ask(settings, text, output=output, speak=not args.print))
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.print:
        print(result.reply)
        return EXIT_OK
    print(f"{result.reply} [{result.reply_engine}]")
    return EXIT_OK if result.spoken else EXIT_FAILURE


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_agent import doctor  # PortAudio, the wake models, the HTTP client

    return doctor.run(args.config, socket_path=args.socket,
                      listen_seconds=args.listen_seconds)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge_agent import benchmark  # imports edge_agent.bench and its test bed

    try:
        names = benchmark.select(args.only)
        report = benchmark.run_all(names, quick=args.quick, out_dir=args.out)
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(benchmark.format_summary(report))
    print(f"report: {args.out / benchmark.REPORT_JSON}, plot: {args.out / benchmark.REPORT_PNG}")
    return EXIT_FAILURE if benchmark.failed(report) else EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    """The audio devices PortAudio sees, named as audio.input/audio.output expect."""
    from edge_agent.audio import list_devices  # PortAudio only for this verb
    from edge_agent.audio.devices import NO_DEVICE_HINT

    try:
        found = list_devices()
    except AudioDeviceError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not found:
        print(f"edge-agent: no audio device found; {NO_DEVICE_HINT}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{'index':>5}  {'in':>3}  {'out':>3}  {'rate':>6}  name")
    for d in found:
        print(f"{d.index:>5}  {d.max_input_channels:>3}  {d.max_output_channels:>3}  "
              f"{d.default_rate:>6}  {d.name}")
    return EXIT_OK


def _settings_or_defaults(path: Path | None) -> Settings | None:
    """The config's settings (--config, else the usual file if there is one), else the
    defaults when no file exists; None after printing the problems of a bad file."""
    path = path or default_config_path()
    if not path.exists():
        return Settings()
    return _load_or_report(path)


def cmd_models(args: argparse.Namespace) -> int:
    from edge_agent.service import models  # Piper and onnxruntime for the voice check

    settings = _settings_or_defaults(args.config)
    if settings is None:
        return EXIT_CONFIG
    if args.action == "list":
        return models.list_models(settings)
    extra = [*(["--base-url", args.base_url] if args.base_url else []),
             *(["--manifest", args.manifest] if args.manifest else [])]
    return models.install_models(settings, args.names, dest=args.dest, extra=extra)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="config file naming the control socket")
    parser.add_argument("--socket", type=Path, default=None,
                        help="control socket of the running daemon")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Smart-speaker daemon: local wake word, cloud answers, offline fallback.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    check = verbs.add_parser("check-config", help="validate a config file (exit 2 if invalid)")
    check.add_argument("path", nargs="?", type=Path, default=None,
                       help="config file (default: $EDGE_AGENT_CONFIG, then "
                            "/etc/edge-agent/config.toml)")
    check.add_argument("--config", type=Path, default=None, help="the same as PATH")
    check.set_defaults(func=cmd_check_config)

    run = verbs.add_parser("run", help="run the daemon (what the systemd unit starts)")
    run.add_argument("--config", type=Path, default=None,
                     help="config file (default: $EDGE_AGENT_CONFIG, then "
                          "/etc/edge-agent/config.toml)")
    run.set_defaults(func=cmd_run)

    status = verbs.add_parser("status", help="what the running daemon is doing")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _add_client_options(status)
    status.set_defaults(func=cmd_status)

    say = verbs.add_parser("say", help="speak a text through the running daemon")
    say.add_argument("text", nargs="+")
    say.add_argument("--offline", action="store_true",
                     help="speak with Piper here, without the daemon (to audio.output)")
    say.add_argument("--output", type=Path, default=None,
                     help="with --offline: write the speech to this .wav file instead")
    _add_client_options(say)
    say.set_defaults(func=cmd_say)

    ask = verbs.add_parser("ask", help="answer a typed question here as a turn would "
                           "(no microphone, no speech recognition) and speak it")
    ask.add_argument("text", nargs="+")
    ask.add_argument("--print", action="store_true",
                     help="print the answer instead of speaking it")
    ask.add_argument("--output", type=Path, default=None,
                     help="speak into this device or .wav file instead of audio.output")
    ask.add_argument("--config", type=Path, default=None,
                     help="config file (default: $EDGE_AGENT_CONFIG, then "
                          "/etc/edge-agent/config.toml, else built-in defaults)")
    ask.set_defaults(func=cmd_ask)

    for verb, what in (("mute", "stop listening (privacy)"), ("unmute", "listen again"),
                       ("listen", "start a turn as if the button were pressed")):
        parser_ = verbs.add_parser(verb, help=what)
        _add_client_options(parser_)
        parser_.set_defaults(func=cmd_simple)

    from edge_agent import benchmark  # the list only; the benchmarks load when run

    bench = verbs.add_parser("bench", help="run the benchmarks (with the test and bench extras); "
                             "writes bench-report.json and bench-report.png",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             description="benchmarks (all by default, in this order):\n"
                             + benchmark.describe() + "\n\nThe cloud is a local fake "
                             "server with injected delays: the figures are this "
                             "machine's, not your cloud service's.")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (minutes)")
    bench.add_argument("--only", nargs="+", metavar="NAME", default=None,
                       help="run only these benchmarks (e.g. turn failover soak)")
    bench.add_argument("--out", type=Path, default=Path(),
                       help="directory for the report and the plot (default: here)")
    bench.set_defaults(func=cmd_bench)

    doctor = verbs.add_parser("doctor", help="check everything a spoken conversation needs, "
                              "each with its fix (exit 1 if anything fails)")
    _add_client_options(doctor)
    doctor.add_argument("--listen-seconds", type=float, default=5.0, metavar="S",
                        help="how long the microphone check listens while you speak "
                             "(default: 5)")
    doctor.set_defaults(func=cmd_doctor)

    models = verbs.add_parser("models", help="the offline models: where the daemon looks "
                              "(list) and fetching them (install, needs internet)")
    models.add_argument("action", choices=("list", "install"))
    models.add_argument("names", nargs="*", help="install: these models only (default: all)")
    models.add_argument("--config", type=Path, default=None,
                        help="config file (default: $EDGE_AGENT_CONFIG, then "
                             "/etc/edge-agent/config.toml, else built-in defaults)")
    models.add_argument("--dest", type=Path, default=None,
                        help="install: into this directory instead of the daemon's")
    models.add_argument("--base-url", default=None, help="install: fetch from this mirror")
    models.add_argument("--manifest", default=None, help=argparse.SUPPRESS)
    models.set_defaults(func=cmd_models)

    devices = verbs.add_parser("devices", help="list audio devices (index, name, channels, rate)")
    devices.set_defaults(func=cmd_devices)

    wake_test = verbs.add_parser(
        "wake-test", help="run the configured wake-word engines over WAV files; prints a JSON "
                          "line per detection (file, model, score, time_s)")
    wake_test.add_argument("files", nargs="+", type=Path, metavar="FILE.wav")
    wake_test.add_argument("--config", type=Path, default=None,
                           help="config file whose [wake] settings to use (default: "
                                "$EDGE_AGENT_CONFIG, then /etc/edge-agent/config.toml, "
                                "else the shipped defaults)")
    wake_test.set_defaults(func=cmd_wake_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    if _missing_config(args):
        return EXIT_CONFIG
    return func(args)


def _missing_config(args: argparse.Namespace) -> bool:
    """A config named on purpose (--config, else $EDGE_AGENT_CONFIG) that is not there
    is an error on every verb that reads one: falling back to another file or to the
    defaults would act on settings the owner did not mean."""
    if not hasattr(args, "config"):
        return False  # the verb reads no config
    if args.config is not None:
        return _absent(args.config, f"--config {args.config}")
    named = os.environ.get(CONFIG_ENV, "")
    if named and getattr(args, "path", None) is None:  # check-config PATH wins over it
        return _absent(Path(named), f"${CONFIG_ENV}={named}",
                       f"; correct the path, or unset {CONFIG_ENV}")
    return False


def _absent(path: Path, given: str, fix: str = "") -> bool:
    """True (after saying so) when ``path`` does not exist; an unreadable file is
    each verb's to report in its own terms."""
    try:
        path.stat()
    except FileNotFoundError:
        print(f"edge-agent: {given}: no such file{fix}", file=sys.stderr)
        return True
    except OSError:
        pass
    return False
