"""What a run is asked to do: the runtime's options (pynf.cli.launch fills
them from the command line; tests and bench build them directly)."""
from dataclasses import dataclass, field


@dataclass
class Options:
    io: str = "mem"
    burst: int = 32
    duration: float = None
    packets: int = None
    flows: int = 1024
    frame_size: int = 64
    rate: float = None          # Gbps, wire rate, whole run
    pps: float = None           # packets a second, whole run
    seed: int = 1
    pcap_in: str = None
    pcap_out: str = None
    rx_ports: list = field(default_factory=lambda: [0])
    tx_ports: list = field(default_factory=lambda: [0, 1])
    ring_size: int = 1024
    ring_full: str = "wait"
    cores: list = None          # CPU ids to pin to; None: this process's affinity
    eal_args: list = field(default_factory=list)
    counters: bool = False      # hardware counters per worker (pynf.measure.perf), where available
    ifaces: list = None         # --iface ports (pynf.control.host.Iface), or None
    iface_driver: str = "af_packet"
    host: bool = False          # ports have addresses: ARP goes to the slow path
    compile: str = "fused"      # fast: a stage not in the cache starts unfused (pynf.runtime.fuse);
                                # pynf.cli.flags.compile_default: $PYNF_COMPILE, else fast
    flow_cache: tuple = None    # (entries per stage replica: -1 sized to the flows, 0 off; auto:
                                # kept while faster), pynf.cli.flags.flow_cache; None: $PYNF_FLOW_CACHE, else auto
    # set by Runtime.build from the plan, for the backend's sizing:
    n_workers: int = 0
    n_tx_queues: int = 0
    ring_slots: int = 0
