"""--flow-cache auto: a stage replica keeps its cache only while it measures cheaper."""
from pynf.flowcache.table import FC_ON, FC_SWITCHES
from pynf.slots import NF_RX, W_CYCLES


class Adapt:
    """--flow-cache auto: keep a stage replica's cache only while it makes
    the stage cheaper. A cache pays where the NFs it stands in for cost more
    than a lookup in a table that stays in the CPU's caches (a large ACL and
    few flows); on cheap NFs, or with flows enough to push the table out to
    memory, it costs more than it saves (bench/RESULTS.md has the figures).

    Measured, not guessed: WARM_S after the start and then every period
    the worker runs PROBE_S with the cache looked past and PROBE_S with it
    in use (in that order, so that the table is refilled before it is
    judged), compares the stage's cycles per packet (ws[W_CYCLES] over the
    stage's packets) and keeps the cheaper for the rest of the period. The
    period is PERIOD_S, doubled (up to PERIOD_MAX_S) each time the cache
    loses. Called by the worker between its loop's calls (pynf.runtime.runtime),
    so the switch falls between bursts.
    """
    WARM_S = 0.3           # the first probe, once the table has filled
    PERIOD_S = 2.0         # doubled after each probe the cache loses, up to PERIOD_MAX_S
    PERIOD_MAX_S = 32.0
    PROBE_S = 0.1
    MIN_PACKETS = 20000

    def __init__(self, fc, ws, nfstat, hz):
        self.fc, self.ws, self.nfstat = fc, ws, nfstat
        self.ticks = {k: int(v * hz) for k, v in (("warm", self.WARM_S), ("period", self.PERIOD_S),
                                                  ("period_max", self.PERIOD_MAX_S), ("probe", self.PROBE_S))}
        self.period = self.ticks["period"]
        self.phase = "run"
        self.until = None
        self.mark = None
        self.cost = {}

    def _sample(self):
        return int(self.ws[W_CYCLES]), int(self.nfstat[-1, NF_RX])

    def _set(self, on):
        # (the table stays exact while looked past: control changes bump
        # its epoch all the same, so what it holds may be used again)
        if bool(self.fc.meta[FC_ON]) != on:
            self.fc.meta[FC_ON] = int(on)
            self.fc.meta[FC_SWITCHES] += 1

    def step(self, now):
        """At TSC `now`, between bursts."""
        if self.until is None:
            self.until = now + self.ticks["warm"]
            return
        if now < self.until:
            return
        if self.phase != "run":
            c, n = self._sample()
            c0, n0 = self.mark
            if n - n0 < self.MIN_PACKETS:               # too little traffic to judge: go on probing
                self.until = now + self.ticks["probe"]
                return
            self.cost[self.phase] = (c - c0) / (n - n0)
        if self.phase == "run":
            self.phase = "off"
            self._set(False)
        elif self.phase == "off":
            self.phase = "on"
            self._set(True)
        else:
            self.phase = "run"
            keep = self.cost["on"] <= self.cost["off"]
            self._set(keep)
            # a cache that keeps losing is probed ever more seldom (each probe costs)
            self.period = self.ticks["period"] if keep else min(2 * self.period, self.ticks["period_max"])
            self.until = now + self.period
            return
        self.mark = self._sample()
        self.until = now + self.ticks["probe"]


