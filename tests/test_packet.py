"""Parsing and write-back against the reference, on edge and mutated frames."""
import random
import struct

import pytest

from pynf.testing import Chain

import packets as P
import reference as R

EDGE = {
    "udp": P.udp(),
    "tcp": P.tcp(),
    "vlan": P.eth(P.ipv4("10.0.0.1", "10.0.0.2"), vlan=100),
    "qinq": P.eth(P.ipv4("10.0.0.1", "10.0.0.2"), vlan=100, vlan2=200),
    "ip_options": P.eth(P.ipv4("10.0.0.1", "10.0.0.2", options=b"\x01" * 8)),
    "nonfirst_fragment": P.eth(P.ipv4("10.0.0.1", "10.0.0.2", frag_off=10, payload=b"y" * 24, df=False)),
    "first_fragment": P.eth(P.ipv4("10.0.0.1", "10.0.0.2", mf=True, df=False)),
    "arp": P.arp(),
    "ipv6": P.ipv6(),
    "runt": P.udp()[:13],
    "vlan_runt": P.eth(b"", vlan=5)[:17],
    "ip_truncated": P.udp()[:30],
    "ip_version": P.eth(b"\x65" + P.ipv4("1.1.1.1", "2.2.2.2")[1:]),
    "ip_ihl": P.eth(b"\x44" + P.ipv4("1.1.1.1", "2.2.2.2")[1:]),
    "ip_len_beyond_frame": P.udp()[:40],
    "ip_len_below_header": P.eth(P.ipv4("1.1.1.1", "2.2.2.2")[:2] + b"\x00\x10" + P.ipv4("1.1.1.1", "2.2.2.2")[4:]),
    "udp_short": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=17, l4=b"abc")),
    "tcp_short": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=6, l4=b"a" * 19)),
    "tcp_doff_small": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=6, l4=b"\0" * 12 + b"\x40" + b"\0" * 7)),
    "tcp_doff_big": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=6, l4=b"\0" * 12 + b"\xf0" + b"\0" * 7)),
    "icmp": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", proto=1, l4=b"\x08\0\0\0" + b"\0" * 20)),
    "padded": P.eth(P.ipv4("1.1.1.1", "2.2.2.2", payload=b""), pad_to=64),
}


def expected(frame):
    reason, _ = R.parse(frame)
    return reason or 0


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_frames_parse_like_reference(name):
    ch = Chain([])
    verdicts, _ = ch.run([EDGE[name]])
    assert verdicts == [expected(EDGE[name])]


def test_every_parse_reason_is_reachable():
    ch = Chain([])
    verdicts, _ = ch.run(list(EDGE.values()))
    seen = {v for v in verdicts if isinstance(v, str)}
    assert seen == set(R.REASONS_PARSE)


def test_mutated_frames_parse_like_reference():
    rng = random.Random(7)
    base = [EDGE["udp"], EDGE["tcp"], EDGE["vlan"], EDGE["ip_options"], EDGE["first_fragment"]]
    frames = []
    for _ in range(600):
        f = bytearray(rng.choice(base))
        for _ in range(rng.randint(0, 3)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        if rng.random() < 0.3:
            f = f[:rng.randint(0, len(f))]
        frames.append(bytes(f))
    ch = Chain([])
    verdicts, outs = ch.run(frames)
    assert verdicts == [expected(f) for f in frames]
    # a stage without NFs changes no byte
    assert [o for o in outs if o is not None] == [f for f, v in zip(frames, verdicts) if v == 0]


def test_counters_add_up():
    ch = Chain([])
    frames = list(EDGE.values()) * 3
    verdicts, _ = ch.run(frames, burst=7)
    drops = ch.drop_counts()
    assert sum(drops.values()) == sum(isinstance(v, str) for v in verdicts)
    assert ch.nfstat[-1, 0] == len(frames)
    assert ch.nfstat[-1, 1] + ch.nfstat[-1, 2] == len(frames)


def test_checksum_fold_matches_full_computation():
    from pynf.packet.parse import csum_apply, csum_delta16, csum_delta32
    rng = random.Random(3)
    for _ in range(2000):
        words = [rng.randrange(65536) for _ in range(10)]
        ck = P.csum(struct.pack("!10H", *words))
        k = rng.randrange(9)
        old = (words[k] << 16) | words[k + 1]
        new = rng.randrange(1 << 32)
        words[k], words[k + 1] = new >> 16, new & 0xFFFF
        assert csum_apply(ck, csum_delta32(old, new)) == P.csum(struct.pack("!10H", *words)) or \
            P.csum(struct.pack("!10H", *words)) in (0, 0xFFFF)
        j = rng.randrange(10)
        old16, new16 = words[j], rng.randrange(65536)
        ck2 = P.csum(struct.pack("!10H", *words))
        words[j] = new16
        got = csum_apply(ck2, csum_delta16(old16, new16))
        want = P.csum(struct.pack("!10H", *words))
        assert got == want or {got, want} <= {0, 0xFFFF}


@pytest.mark.parametrize("frame_size", [64, 128, 1518])
def test_builtin_traffic_checksums_are_valid(frame_size):
    from pynf.traffic.flows import make_flows
    from pynf.traffic.templates import frame_bytes
    fs = make_flows(3000, 3)
    assert all(P.checksums_ok(frame_bytes(fs, frame_size, i)) for i in range(0, 3000, 13))


def test_builtin_templates_hold_each_flows_fields():
    """The compiled template builder writes each flow's own fields (the
    checksums are checked above)."""
    import numpy as np

    from pynf.traffic.flows import make_flows
    from pynf.traffic.templates import GEN_MAC_DST, GEN_MAC_SRC, build_templates
    fs = make_flows(400, 4)
    ids = np.arange(70000, 70400)[::-1]
    t = build_templates(fs, 128, ids=ids)
    assert t.shape == (400, 64)
    protos = set()
    for i in range(0, 400, 3):
        f = bytes(t[i])
        assert f[:14] == GEN_MAC_DST + GEN_MAC_SRC + b"\x08\x00"
        ver, _, tot, ident, frag, ttl, proto, _, src, dst, sport, dport = struct.unpack("!BBHHHBBHIIHH", f[14:38])
        assert (ver, tot, ident, frag, ttl) == (0x45, 110, ids[i] & 0xFFFF, 0x4000, 64)
        assert (proto, src, dst, sport, dport) == (fs.proto[i], fs.src_ip[i], fs.dst_ip[i], fs.sport[i], fs.dport[i])
        if proto == 6:
            assert f[38:50] == bytes([0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xFF, 0xFF])
        else:
            assert struct.unpack("!H", f[38:40])[0] == 90 and f[42:] == bytes(22)
        protos.add(proto)
    assert protos == {6, 17}


def test_builtin_traffic_stays_within_its_bound():
    """DPDK sizes the EAL's memory and the mbuf pool from builtin_bound
    before the traffic is built: every frame must fit."""
    from pynf.io import feed
    for flows in (1, 7, 4095, 4096, 9000):
        for nq, size in ((1, 64), (3, 1518), (4, 100)):
            f = feed.builtin(flows, size, 2, nq)
            frames, longest = feed.builtin_bound(flows, size, nq)
            assert sum(len(q) for q in f.seqs) <= frames and int(f.t_len.max()) == longest


@pytest.mark.parametrize("frame_size", [64, 1518, 0])
@pytest.mark.parametrize("chunk_bytes", [1 << 22, 1000])
def test_template_records_write_the_frames_they_stand_for(tmp_path, frame_size, chunk_bytes):
    """pcap.Writer.write_templates (DPDK's queue files) writes what frame by
    frame writing would: the templates' bytes, zero payload, lengths, also
    a chunk at a time through one reused buffer. frame_size 0: templates of
    random bytes and lengths, each copied in part."""
    import numpy as np

    from pynf.io import feed, pcap
    if frame_size:
        f = feed.builtin(300, frame_size, 1, 2)
    else:
        rng = np.random.default_rng(4)
        t_len = rng.integers(14, 1600, 200).astype(np.int32)
        t_copy = np.minimum(t_len, rng.integers(0, 200, 200)).astype(np.int32)
        t_off = np.concatenate([[0], np.cumsum(t_copy)[:-1]]).astype(np.int64)
        arena = rng.integers(0, 256, int(t_copy.sum()) + 1, dtype=np.uint8)
        seq = rng.integers(0, 200, 500).astype(np.int32)
        f = feed.Feed(arena, t_off, t_len, t_copy, [seq[:250], seq[250:]], once=True)
    for seq in f.seqs:
        a, b = tmp_path / "bulk.pcap", tmp_path / "one.pcap"
        w = pcap.Writer(str(a))
        w.write_templates(f.arena, f.t_off, f.t_len, f.t_copy, seq, chunk_bytes=chunk_bytes)
        w.close()
        w = pcap.Writer(str(b))
        for t in seq.tolist():
            o, ln, c = int(f.t_off[t]), int(f.t_len[t]), int(f.t_copy[t])
            w.write(f.arena[o:o + c].tobytes() + bytes(ln - c), 0)
        w.close()
        assert a.read_bytes() == b.read_bytes()
        assert len(pcap.read(str(a))) == len(seq) > 0


@pytest.mark.parametrize("profile", ["syn", "dns", "mix"])
def test_traffic_profiles_send_what_they_say(profile):
    """--traffic: SYNs are SYNs, DNS queries parse (Scapy reads them back),
    checksums hold, and the flows the default ACL denies stay TCP to 23."""
    from scapy.layers.dns import DNS
    from scapy.layers.l2 import Ether

    from pynf.traffic.flows import KIND_DNS, KIND_SYN, make_flows, profile_flows
    from pynf.traffic.templates import DNS_FRAME, frame_bytes
    fs, kind = profile_flows(make_flows(64, 3), profile)
    assert (kind == KIND_SYN).any() == (profile != "dns") and (kind == KIND_DNS).any() == (profile != "syn")
    for i in range(64):
        f = frame_bytes(fs, DNS_FRAME, i, kind)
        assert P.checksums_ok(f), i
        if i % 16 == 7:
            assert f[23] == 6 and struct.unpack("!H", f[36:38])[0] == 23
        elif kind[i] == KIND_SYN:
            assert f[23] == 6 and f[47] == 0x02 and struct.unpack("!H", f[36:38])[0] == 80
        elif kind[i] == KIND_DNS:
            q = Ether(f)[DNS]
            name = q.qd[0].qname.decode()
            assert q.qr == 0 and name == f"f{i:05d}.{'ads.example' if (i // 8) % 8 == 3 else 'example.com'}."
