"""Errors that reach the user as one line and an exit status (docs/design.md)."""


class UsageError(Exception):
    """Bad flags or bad input files: exit status 2."""


class ConfigError(UsageError):
    """A bad line in an input file: printed as FILE:LINE: message."""

    def __init__(self, path, line, msg):
        self.path, self.line, self.msg = path, line, msg
        super().__init__(f"{path}:{line}: {msg}" if line else f"{path}: {msg}")


class RuntimeFailure(Exception):
    """The run could not go on (EAL init, port setup, ...): exit status 1."""


def is_decimal(text):
    """True for ASCII decimal digits only ("²".isdigit() is True, int("²") fails)."""
    return text.isascii() and text.isdigit()


def parse_ipv4(text):
    """Dotted quad -> int, or None."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    v = 0
    for p in parts:
        if not is_decimal(p) or len(p) > 3 or int(p) > 255:
            return None
        v = (v << 8) | int(p)
    return v


def format_ipv4(v):
    v = int(v)
    return f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def read_bytes(path):
    """A config file's bytes; an unreadable file is a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(path, 0, f"cannot read: {e.strerror or e}") from None


def read_lines(path, raw=None):
    """(line number, text) of the meaningful lines of a config file (its
    bytes `raw`, where the caller has read them already).

    Blank lines and '#' comments are skipped. An unreadable file, or one
    that is not UTF-8, is a ConfigError naming it.
    """
    raw = read_bytes(path) if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, 0, f"cannot read: {e}") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s:
            out.append((no, s))
    return out
