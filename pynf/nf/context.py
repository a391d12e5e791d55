"""What an NF's configuration may depend on: the run's files and traffic,
and the replicas of the stage the NF runs in."""
from dataclasses import dataclass, field, replace
from functools import cached_property

from pynf.traffic.flows import make_flows


@dataclass
class RunContext:
    files: dict = field(default_factory=dict)      # the NFs' input files: File.key -> path (pynf.nf.declare)
    flows: int = 1024           # --flows: built-in traffic's flow count
    seed: int = 1
    n_ports: int = 2            # NF output ports in use (len of --tx-ports)
    settings: dict = field(default_factory=dict)   # --set NF.KEY=VALUE, by NF name
    host: object = None         # --iface ports and addresses (pynf.control.host.Host), or None
    replicas: int = 1           # replicas of the NF's stage at start

    def for_stage(self, replicas):
        """This context for an NF in a stage of `replicas` replicas (the
        built-in traffic, made once, is shared)."""
        c = replace(self, replicas=replicas)
        if "flow_set" in self.__dict__:
            c.__dict__["flow_set"] = self.__dict__["flow_set"]
        return c

    def file(self, key):
        """The path given for the input file `key` (a File's key: "routes"
        for --routes), or None."""
        return self.files.get(key)

    @cached_property
    def flow_set(self):
        return make_flows(self.flows, self.seed)
