"""What an NF declares so that the flow cache may stand in for it
(`@nf(..., cache=Cacheable(...))`; the contract is pynf.flowcache's)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Cacheable:
    """An NF's declaration that the flow cache may stand in for it.

    when: config -> bool: cacheable under this configuration (None: always).
    guard: @hot (pkts, i, state) -> bool: the cache may serve packet i (it
      sees the packet as it enters the NF's segment); a refused packet runs
      the NF and is not recorded.
    replay: @hot (state, tag): run for every packet the cache serves, with
      the tag (32 bits, not negative) the NF left in pkts.tag[i] when the
      flow was recorded.
    version: @hot (state) -> int64, read once a burst: changes (grows) when
      state the NF reads changes off the control path.
    """
    when: object = None
    guard: object = None
    replay: object = None
    version: object = None

    def applies(self, config):
        return self.when is None or (config is not None and bool(self.when(config)))


