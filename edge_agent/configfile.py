"""The config file as text: read it safely, say what is wrong with its syntax in
an owner's words, and find the line each problem is on.

The file is read once, from a regular file only, up to MAX_CONFIG_BYTES: a FIFO
would block the reader forever and /dev/zero never ends. Lines are found by a
small scanner of TOML's line structure (headers, ``key = value``, multi-line
strings and arrays), run only on text tomllib has accepted or pinpointed.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from edge_agent.errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024
"""A full config is about 6 KB; anything past this is not a config file."""

CURLY_QUOTES = "\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb"
"""What a word processor types for " and ': TOML only knows the straight ones."""

SHOWN_VALUE_CHARS = 24
"""An unquoted value longer than this is not echoed in the fix (it may be a secret)."""

_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'[^\']*\'')


def read_config_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The whole file and its status, taken from one open file (no stat-then-read
    race). Refuses anything that is not a regular file, and files too big."""
    where = str(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file ({_kind(st.st_mode)}); "
                              "point edge-agent at a .toml file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{where}: {st.st_size} bytes is too big for a config file "
                              f"(at most {MAX_CONFIG_BYTES})")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        after = os.fstat(fd)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: too big for a config file (at most {MAX_CONFIG_BYTES} "
                          "bytes)")
    if len(raw) != after.st_size or _version(after) != _version(st):
        raise ConfigError(f"{where}: the file changed while it was read (is it still being "
                          "written?); try again once it is saved")
    return raw, st


def _version(st: os.stat_result) -> tuple[int, int, int]:
    """Changes whenever the file is written (the size too: timestamps are coarse)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def decode(raw: bytes, where: str) -> str:
    """UTF-8 text without a byte-order mark, or a ConfigError naming the line."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"{where}:1: the file starts with an invisible byte-order mark (it "
                          "was saved as \"UTF-8 with BOM\"); save it as plain UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{where}:{line}: not UTF-8 text; save the file as UTF-8") from None


def syntax_problem(exc: tomllib.TOMLDecodeError, text: str, where: str) -> str:
    """tomllib's complaint in plain words, with the line it is on."""
    message = str(exc)
    found = _POSITION.search(message)
    words = message[: found.start()] if found else message
    line = int(found.group(1)) if found and found.group(1) else None
    source = (text.splitlines()[line - 1: line] or [""])[0] if line else ""
    key = source.split("=", 1)[0].strip() if "=" in source else ""
    at = f"{where}:{line}" if line else where
    if found and not line and words != "Cannot overwrite a value":  # "at end of document"
        return (f"{where}:{len(text.splitlines())}: the file ends inside a value (a [ list, "
                f"{{ table or quote that is never closed?): {words}")
    if words == "Illegal character '\\n'":
        return (f"{at}: a quoted value is not closed on this line; add the closing quote "
                '(text over several lines goes between """ and """)')
    if words == "Invalid value" and any(q in source for q in CURLY_QUOTES):
        return (f"{at}: curly quotes (\u201c \u201d or \u2018 \u2019), as a word processor "
                "types them: TOML needs straight quotes \" or '")
    if words == "Invalid value":
        value = source.split("=", 1)[1].split("#", 1)[0].strip() if key else ""
        # The value is shown only where it cannot be a pasted API key.
        shown = value if value and len(value) <= SHOWN_VALUE_CHARS and "key" not in key else "..."
        example = f'{key or "key"} = "{shown}"'
        return (f"{at}: {key or 'this value'}: a value that is not a number, true/false, "
                f"[a list] or {{a table}} is text and goes in double quotes: {example}")
    if words == "Cannot overwrite a value":
        twice = [(k, lines) for k, lines in key_lines(text).items() if len(lines) > 1]
        if twice:
            name, lines = twice[0]
            return (f"{where}:{lines[1]}: {name} is set twice (first on line {lines[0]}); "
                    "keep one of them")
    declared = re.fullmatch(r"Cannot declare \((.*)\) twice", words)
    if declared:
        name = ".".join(part.strip().strip("'\"") for part in declared.group(1).split(",")
                        if part.strip())
        return f"{at}: the section [{name}] appears twice; merge the two into one"
    column = f" (column {found.group(2)})" if line and found else ""
    return f"{at}: TOML syntax error: {words}{column}"


def key_lines(text: str) -> dict[str, list[int]]:
    """Every dotted key and table the text sets, with the lines it is set on
    (a key set twice has two). Inline tables count as their key's line."""
    found: dict[str, list[int]] = {}
    table = ""
    depth = 0  # open [ or { of a value spanning lines
    in_string: str | None = None  # the quotes of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if line.count(in_string) % 2:
                in_string = None
            continue
        bare = _STRINGS.sub('""', line).split("#", 1)[0]
        if depth:
            depth = max(0, depth + _nesting(bare))
            continue
        stripped = bare.strip()
        if stripped.startswith("["):
            name = stripped.strip("[]").strip()
            table = _dotted(name)
            found.setdefault(table, []).append(number)
            continue
        if "=" not in stripped:
            continue
        key, value = line.split("=", 1)
        dotted = f"{table}.{_dotted(key)}" if table else _dotted(key)
        found.setdefault(dotted, []).append(number)
        for quotes in ('"""', "'''"):
            if value.count(quotes) % 2:
                in_string = quotes
        depth = max(0, _nesting(bare.split("=", 1)[1]))
    return found


def _nesting(code: str) -> int:
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def _dotted(key: str) -> str:
    return ".".join(part.strip().strip("'\"") for part in key.split("."))


def locate(problem: str, where: str, lines: dict[str, list[int]]) -> str:
    """``problem`` ("FILE: key: ...") as "FILE:LINE: key: ..." when the key (or,
    for a key left at its default, another key it names, or its section) is in
    the file."""
    head = f"{where}: "
    if not problem.startswith(head):
        return problem
    rest = problem[len(head):]
    primary = rest.split(":", 1)[0].strip()
    parts = primary.split(".")
    # The key itself or the table it is in (an inline one), then another key the
    # problem names (the one that made a default wrong), then the section.
    enclosing = [".".join(parts[:n]) for n in range(len(parts), 1, -1)]
    named = re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", rest)
    line = next((lines[k][0] for k in [*enclosing, *named, parts[0]] if k in lines), None)
    return f"{where}:{line}: {rest}" if line else problem
