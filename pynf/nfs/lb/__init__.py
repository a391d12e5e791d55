"""lb: stateful layer-4 load balancer: Maglev hashing, NAT, idle timeouts.

Synopsis:   pynf run --rtc ...,lb,... [--backends FILE] [--set lb.KEY=VALUE]
Backends:   one of two formats, '#' comments, not mixed in one file:
              a.b.c.d:port                        paper mode: one backend a line
              VIP:PORT BACKEND:PORT [BACKEND:PORT ...]
                                                  services mode: one service a line
            A service takes TCP and UDP to VIP:PORT. Errors (exit 2,
            FILE:LINE): a bad address or port, a service line without
            backends, a file mixing the formats, VIP:PORT defined twice, a
            backend listed twice in one service.
Behaviour:  Flows live in a set-associative flow table (pynf.tables.flowtable).
            A new flow's backend is chosen by Maglev consistent hashing
            (pynf.tables.maglev): table[hash5 % table_size], one lookup table per
            service, built on the control path; instances and replicas with
            the same backends choose the same backend for a flow, and
            removing one of N backends moves its own flows and few others.
            Paper mode: every TCP/UDP packet is balanced, its destination
            IP and port rewritten to the flow's backend (the paper's LB).
            Services mode: only packets to a VIP:PORT are balanced (dst
            rewritten VIP:PORT -> BACKEND:PORT) and each new connection
            also gets a reverse entry, keyed by the backend -> client
            5-tuple, that rewrites the reply's source back to VIP:PORT
            (NAT, as IPVS and VPP's lb do), so TCP works end to end. A reply
            that finds no entry passes untouched (a client may talk to a
            backend directly); with reverse_nat=table+backend, one from a
            backend serving exactly one service is rewritten all the same
            (for replicas whose forward packets went to another replica:
            replicas share no state). Everything else passes untouched
            (a filter of the VIP and backend addresses lets most of it
            by without a table lookup). The stage fixes IPv4 and TCP/UDP
            checksums (RFC 1624; UDP 0 stays 0).
State:      each entry has a last-seen time and a state: TCP half-open (a
            SYN without ACK started it; the client has not yet ACKed),
            TCP established, TCP closing (a FIN or RST was seen, either
            way), UDP, or fragment. The client's ACK makes a half-open
            connection established, both directions. An entry
            idle for its state's timeout is dead: the next packet of the
            5-tuple starts a new flow in it, and a new flow may take its
            place. The table grows with the flows (max_entries below); a
            new flow whose bucket (8 entries) holds only live entries
            evicts the bucket's least recently seen (LRU within the bucket;
            on_full=drop drops instead): rare below the cap, the rule at
            it. Half-open and closing entries go first, and a new half-open
            connection takes only such an entry's place, never an
            established one's: a flood of spoofed SYNs (and the RSTs
            backends answer some with) fills the table with half-open and
            closing entries that push each other out, while established
            connections keep theirs (Linux keeps half-open connections
            apart for the same reason).
            A SYN (without ACK) on a
            closing entry reopens it (port reuse). Time is the TSC, read
            once a burst.
Fragments:  paper mode: fragments pass unchanged (the paper's rule), or
            are dropped with non_l4=drop. Services mode: a first fragment
            is balanced by its 5-tuple like any packet, and leaves an entry
            keyed by (src, dst, proto, IP id) with the same rewrite; the
            later fragments of that datagram find it and get the same
            addresses (no ports: they carry none), so all fragments of a
            datagram go to the flow's backend. A non-first fragment to a
            VIP that arrives before its first fragment is dropped (lb_frag).
Drops:      lb_full        new flow in a bucket of live entries, with on_full=drop
            lb_non_l4      not TCP/UDP (paper mode: or a fragment), with
                           non_l4=drop; services mode: only those to a VIP
            lb_frag        services mode: non-first fragment to a VIP with
                           no entry (its first fragment not seen)
            lb_no_backend  new flow to a service whose backends were all
                           drained or removed (control path)
            lb_syn_full    new connection (a SYN) whose bucket holds no
                           half-open or closing entry to replace:
                           established ones stay
            lb_rate        new flow over max_new_per_s
Settings:   capacity         flow-table entries per replica at start, rounded
                             up to 8 x a power of two (default: max(65536, 4 x
                             --flows); 32 bytes an entry, so 2 MiB at least)
            max_entries      the most the table grows to, per replica
                             (8388608: 256 MiB; a connection takes two entries
                             in services mode). The table doubles, a bucket at
                             a time as new flows come, once a quarter of it is
                             used; the memory is touched only as it grows
            on_full          evict | drop | hash (send without an entry)
            non_l4           pass | drop
            table_size       Maglev table size M, a prime (65537)
            tcp_timeout      idle seconds, established TCP (900)
            tcp_fin_timeout  idle seconds after a FIN or RST (120)
            tcp_syn_timeout  idle seconds, half-open TCP (60, IPVS's SYN_RECV)
            max_new_per_s    new flows a second per replica, at most (0: no
                             cap; a bucket of a second's worth; over it:
                             lb_rate), as Katran's MAX_CONN_RATE
            udp_timeout      idle seconds, UDP (300)
            frag_timeout     idle seconds, a fragmented datagram (30)
            reverse_nat      table | table+backend. Default: table with one
                             replica of lb's stage; table+backend with more
                             (replicas share no state, and the kernel or NIC
                             may hand a reply to another replica than its
                             connection's). table+backend also rewrites the
                             replies of a client talking to a backend's
                             service port directly, and cannot rewrite
                             replies from a backend in several services
            Timeout defaults are IPVS's (ipvsadm --set tcp tcpfin udp:
            900 120 300); the fragment timeout is Linux's ipfrag_time.
Counters:   st.counters[C_NEW, C_EXPIRED, C_EVICTED, C_FRAGS, C_CLOSED,
            C_REVERSE_STATELESS]: flows created, expired entries taken by
            a new flow, live entries evicted, fragments rewritten,
            entries closed by FIN/RST, replies rewritten without an entry.
            The stats (report, /metrics) add flows, flow_capacity (the
            table's entries now), flow_max_entries and resizes_total.
Control:    add_backend, remove_backend (and flush its flows),
            drain_backend (no new flows), flush_flows: plain Python over
            the state arrays; call them through the mailbox (rt.mail.control) so each
            replica applies them between bursts. set_clock(st, seconds)
            fixes the NF's clock (tests simulate time passing: it sets
            st.ctl[CLOCK], which overrides the TSC when >= 0).
Default:    without --backends, paper mode with 8 backends
            192.168.0.1..8, port 8080 (with --iface, --backends is required).
Example:    pynf run --rtc acl,lb,l3fwd --backends services.txt --set lb.tcp_timeout=300
Follows:    the paper's LB NF (5-tuple flow table, dst rewrite); Maglev
            (Eisenbud et al., NSDI '16) for the choice; IPVS NAT mode for
            the reverse path and the timeouts.
"""
from pynf.nf import nf
from pynf.nfs.lb import config, state
from pynf.nfs.lb.config import (
    BE_FLAG,
    BE_FREE,
    BE_LIMIT,
    BE_SHIFT,
    DROPS,
    S_FIN,
    S_SYN,
    S_TCP,
    SVC_ROOM,
    LbConfig,
    ct,
    parse_backends,
)
from pynf.nfs.lb.control import FILES, VERBS
from pynf.nfs.lb.fastpath import lb as _lb
from pynf.nfs.lb.migrate import migrate
from pynf.nfs.lb.state import (
    LIVE_SETTINGS,
    add_backend,
    add_service,
    counters,
    del_service,
    drain_backend,
    flow_count,
    flush_flows,
    lb_stats,
    make_state,
    remove_backend,
    services,
    set_clock,
    ticks,
    timeouts,
)

__all__ = ["BE_FLAG", "BE_FREE", "BE_LIMIT", "BE_SHIFT", "S_FIN", "S_SYN", "S_TCP", "SVC_ROOM", "LbConfig",
           "add_backend",
           "add_service", "config", "counters", "ct", "del_service", "drain_backend", "flow_count",
           "flush_flows", "lb", "make_state", "parse_backends", "remove_backend", "services", "set_clock",
           "state", "ticks", "timeouts"]

lb = nf("lb", drops=DROPS, config=LbConfig, state=make_state,
        files=FILES, verbs=VERBS, live=LIVE_SETTINGS, stats=lb_stats, migrate=migrate, key="flow",
        writes=lambda cfg: None if cfg.services else ("dst_ip", "dport"))(_lb)   # paper mode: no reverse NAT
