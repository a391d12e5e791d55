"""The control socket: `pynf run --control PATH` serves, `pynf ctl` asks.

A Unix stream socket, mode 0600 in a directory of its own (no network
listener: control is for whoever may act as this user on this host, as
vppctl's cli.sock and DPDK's telemetry socket are). One request per
connection, one JSON line each way:

    -> {"argv": ["route", "add", "10.0.0.0/8", "1"]}
    <- {"ok": true, "out": "route 10.0.0.0/8 -> port 1\\n"}
    <- {"ok": false, "code": 2, "error": "route add: bad route ..."}

code 2: a bad command or file (nothing changed); 1: the change could not be
made (a worker did not take it in time; the running pynf failed).
The commands themselves are pynf.control.commands'.
"""
import json
import os
import socket
import socketserver
import stat
import threading

from pynf.errors import RuntimeFailure, UsageError

MAX_REQUEST = 1 << 16
TIMEOUT_S = 30.0


def runtime_dir():
    """Where pynf puts its sockets: /run/pynf as root, else
    $XDG_RUNTIME_DIR/pynf, else /tmp/pynf-UID."""
    if os.geteuid() == 0:
        return "/run/pynf"
    x = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(x, "pynf") if x else f"/tmp/pynf-{os.geteuid()}"


def default_path():
    return os.path.join(runtime_dir(), "pynf.sock")


def answers(path):
    """True if a pynf serves on the socket at path."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(path)
            return True
    except OSError:
        return False


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(MAX_REQUEST + 1)
        try:
            req = json.loads(line)
            argv = req["argv"]
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self._send({"ok": False, "code": 2, "error": "bad request (want one JSON line "
                                                                 "{\"argv\": [words]})"})
        try:
            out = self.server.commands.run(argv)
            self._send({"ok": True, "out": out})
        except UsageError as e:
            self._send({"ok": False, "code": 2, "error": str(e)})
        except RuntimeFailure as e:
            self._send({"ok": False, "code": 1, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - one command's fault must not stop the server
            self._send({"ok": False, "code": 1, "error": f"{type(e).__name__}: {e}"})

    def _send(self, obj):
        try:
            self.wfile.write((json.dumps(obj) + "\n").encode())
        except OSError:
            pass                # the client went away


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ControlServer:
    """Serves `commands` (a pynf.control.commands.Commands) on a Unix socket."""

    def __init__(self, path, commands):
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        if path == default_path() or d == runtime_dir():
            os.makedirs(d, mode=0o700, exist_ok=True)
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise UsageError(f"--control {path}: exists and is not a socket")
            if answers(path):
                raise UsageError(f"--control {path}: another pynf answers on it "
                                 "(give another path)")
            os.unlink(path)              # left by a pynf that died
        old = os.umask(0o177)
        try:
            self.server = _Server(path, _Handler)
        except OSError as e:
            raise UsageError(f"--control {path}: {e.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.server.commands = commands
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True, name="pynf-control")

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def choose_path(given):
    """The socket path for `--control`: the one given, or the default (and
    when another pynf holds the default, one named after this process)."""
    if given:
        return given
    path = default_path()
    if os.path.exists(path) and answers(path):
        return os.path.join(runtime_dir(), f"pynf-{os.getpid()}.sock")
    return path


def ask(path, argv, timeout=TIMEOUT_S):
    """Send one command; (exit code, text for stdout, text for stderr)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall((json.dumps({"argv": list(argv)}) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
    except FileNotFoundError:
        return 2, "", f"pynf ctl: no pynf is running with control socket {path}"
    except ConnectionRefusedError:
        return 2, "", f"pynf ctl: no pynf is running with control socket {path} (stale socket)"
    except PermissionError:
        return 2, "", f"pynf ctl: {path}: permission denied (the socket is its owner's only)"
    except TimeoutError:
        return 1, "", f"pynf ctl: {path}: no answer within {timeout:g} s"
    except OSError as e:
        return 2, "", f"pynf ctl: {path}: {e.strerror or e}"
    try:
        rep = json.loads(buf)
    except ValueError:
        return 1, "", f"pynf ctl: {path}: the pynf there closed the connection without an answer"
    if rep.get("ok"):
        return 0, rep.get("out", ""), ""
    return int(rep.get("code", 1)), "", f"pynf ctl: {rep.get('error', 'failed')}"
