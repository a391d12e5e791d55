"""What lets a person act on a running chain (pynf.cli.launch.execute sets it up)."""
import threading

from pynf.errors import RuntimeFailure, UsageError


class Operate:
    """What lets a person act on a running chain: the control socket, the
    metrics server, the rates `stats` shows, and the signals (SIGINT and
    SIGTERM stop, drain and report; a second one while stopping is
    absorbed; SIGHUP reloads the files given at start)."""

    def __init__(self, rt, err):
        from pynf.control.commands import Commands
        self.rt, self.err = rt, err
        self.commands = Commands(rt)
        self.rates = self.control = self.metrics = None
        self.stopping = False

    def start(self, control, metrics):
        from pynf.cli.ui import say
        from pynf.runtime.report import Rates
        self.rates = self.commands.rates = Rates(self.rt).start()
        if control != "off":
            from pynf.control.server import ControlServer, choose_path
            path = choose_path(control)
            try:
                self.control = ControlServer(path, self.commands).start()
                say(self.err, f"pynf: control socket {path} (pynf ctl --socket {path} COMMAND)")
            except UsageError:
                if control:
                    raise
                say(self.err, f"pynf: warning: no control socket: cannot open {path}")
        if metrics:
            from pynf.control.metrics import MetricsServer
            self.metrics = MetricsServer(self.rt, metrics)
            say(self.err, f"pynf: metrics at http://{self.metrics.addr}:{self.metrics.port}/metrics")

    def on_stop_signal(self, signum, frame):
        from pynf.cli.ui import say
        if self.stopping:
            say(self.err, "pynf: already stopping (draining, then the report)")
            return
        self.stopping = True
        self.rt.request_stop()

    def on_hup(self, signum, frame):
        threading.Thread(target=self._reload, daemon=True, name="pynf-reload").start()

    def _reload(self):
        from pynf.cli.ui import say
        try:
            out = self.commands.run(["reload"])
            for line in out.splitlines():
                say(self.err, f"pynf: SIGHUP: {line}")
        except (UsageError, RuntimeFailure) as e:
            say(self.err, f"pynf: SIGHUP: reload refused, the running state stays: {e}")

    def close(self):
        for part in (self.metrics, self.control):
            if part is not None:
                part.close()
        if self.rates is not None:
            self.rates.stop()
