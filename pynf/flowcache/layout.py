"""Where a stage's flow-cache entry keeps what (used by pynf.flowcache.codegen)."""

# Fields a stage writes back; a segment records those its NFs write, and a
# segment after an NF that is not cacheable guards those that NF writes.
FIELDS = ("eth_dst", "eth_src", "src_ip", "dst_ip", "ttl", "sport", "dport")
# bits a packed field keeps: a verdict in an entry is an output port (a
# drop is kept in the info word), a tag is 32 bits
BITS = dict(eth_dst=48, eth_src=48, src_ip=32, dst_ip=32, ttl=8, sport=16, dport=16, port=15, tag=32)


class Layout:
    """Where a stage's flow-cache entry keeps what, from the NFs'
    cacheability and the fields each writes: fields are packed into the
    words of vals (a word: [(field, shift, mask)]), so that an entry of the
    usual chain fits one cache line.

    segments: [(first NF, last NF)] of consecutive cacheable NFs;
    guards[s]: the words holding what segment s checks at its entry (the
      fields that NFs before it that are not cacheable may write, and the
      verdict; none for a segment that starts the stage);
    pt[j]: NF j's word: its replay tag, and for a segment's last NF the
      verdict ("port") at the segment's end (None: nothing to keep);
    writes[s]: the words holding the fields segment s writes, at its end;
    vw: words per entry (column 0 is the info word), a multiple of 8.
    """

    def __init__(self, cacheable, writes, replays):
        self.segments = []
        j = 0
        k = len(cacheable)
        while j < k:
            if cacheable[j]:
                e = j
                while e + 1 < k and cacheable[e + 1]:
                    e += 1
                self.segments.append((j, e))
                j = e + 1
            else:
                j += 1
        self.col = 1
        self.guards, self.writes, self.pt = [], [], {}
        for a, e in self.segments:
            before = set().union(*(writes[x] for x in range(a) if not cacheable[x])) if a else set()
            g = [f for f in FIELDS if f in before]
            if any(not cacheable[x] for x in range(a)):
                g.append("port")                # such an NF may have set the verdict too
            self.guards.append(self._pack(g))
            for x in range(a, e + 1):
                fs = (["tag"] if replays[x] else []) + (["port"] if x == e else [])
                self.pt[x] = self._pack(fs)[0] if fs else None
            mine = set().union(*(writes[x] for x in range(a, e + 1)))
            self.writes.append(self._pack([f for f in FIELDS if f in mine]))
        self.vw = (self.col + 7) // 8 * 8

    def _pack(self, fields):
        """Words for `fields`, first fit, 63 bits a word (int64, never negative)."""
        words = []
        for f in sorted(fields, key=lambda f: -BITS[f]):
            for w in words:
                if w[2] + BITS[f] <= 63:
                    w[1].append((f, w[2], (1 << BITS[f]) - 1))
                    w[2] += BITS[f]
                    break
            else:
                words.append([self.col, [(f, 0, (1 << BITS[f]) - 1)], BITS[f]])
                self.col += 1
        return [(c, parts) for c, parts, _ in words]

    def segment_of(self, j):
        for s, (a, e) in enumerate(self.segments):
            if a <= j <= e:
                return s
        return -1
