"""The chain spec: which NFs, grouped into which stages, with how many replicas.

    --rtc a,b,c              one stage [a,b,c]; --cores N replicas
    --pl a,b,c               stages [a] [b] [c], one replica each
    --stages "a|b,c"         stages [a] [b,c]; --replicas 1,2 per stage

RTC and PL are the two extremes of the hybrid form; all three become a Plan.
"""
from dataclasses import dataclass

from pynf.errors import UsageError


@dataclass
class StagePlan:
    tokens: list            # NF tokens as given (names or FILE:NAME)
    replicas: int = 1
    max_replicas: int = 0   # room to scale to while running (pynf ctl scale); 0: replicas

    @property
    def slots(self):
        """Workers made for this stage: its replicas, and parked ones to scale to."""
        return max(self.replicas, self.max_replicas)


@dataclass
class Plan:
    model: str              # rtc | pl | hybrid
    stages: list

    @property
    def tokens(self):
        return [t for s in self.stages for t in s.tokens]

    @property
    def chain(self):
        return ",".join(self.tokens)

    @property
    def spec(self):
        return "|".join(",".join(s.tokens) for s in self.stages)

    @property
    def workers(self):
        return sum(s.replicas for s in self.stages)


def _split(text, what):
    toks = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in toks):
        raise UsageError(f"{what}: empty NF name in {text!r}")
    return toks


def parse(rtc=None, pl=None, stages=None, replicas=None, cores=None):
    given = [x is not None for x in (rtc, pl, stages)]
    if sum(given) != 1:
        raise UsageError("give exactly one of --rtc CHAIN, --pl CHAIN, --stages SPEC")
    if rtc is not None:
        if replicas is not None:
            raise UsageError("--replicas goes with --stages; use --cores N for --rtc")
        plan = Plan("rtc", [StagePlan(_split(rtc, "--rtc"), cores or 1)])
    elif pl is not None:
        if replicas is not None:
            raise UsageError("--replicas goes with --stages")
        plan = Plan("pl", [StagePlan([t]) for t in _split(pl, "--pl")])
    else:
        parts = stages.split("|")
        # an empty first stage ("|a,b") is a dispatch stage: no NF, one core,
        # spreading flows over the next stage's replicas (which can then scale)
        lead = [StagePlan([], 1)] if len(parts) > 1 and not parts[0].strip() else []
        plan = Plan("hybrid", lead + [StagePlan(_split(p, "--stages")) for p in parts[len(lead):]])
        if replicas is not None:
            try:
                reps = [int(x) for x in replicas.split(",")]
            except ValueError:
                raise UsageError(f"--replicas: want comma-separated counts, not {replicas!r}") from None
            if len(reps) != len(plan.stages):
                raise UsageError(f"--replicas: {len(reps)} counts for {len(plan.stages)} stages")
            if any(r < 1 for r in reps):
                raise UsageError("--replicas: every stage needs at least 1 replica")
            for s, r in zip(plan.stages, reps):
                s.replicas = r
    seen = set()
    for t in plan.tokens:
        if t in seen:
            raise UsageError(f"NF {t!r} appears twice in the chain")
        seen.add(t)
    return plan
