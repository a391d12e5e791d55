"""The control plane: what runs beside the workers, in Python, off the fast
path: the ports' addresses (host), the neighbour table and ARP (neigh, arp),
and the slow path that receives the packets NFs hand over (slowpath)."""
