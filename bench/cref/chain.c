/* The C reference of pynf's acl,lb,l3fwd chain, for the benchmark in
 * bench/dpdk_vs_c.py: the same semantics (DESIGN.md), the same files, built
 * on DPDK's own libraries: rte_acl for the ACL (first match = highest
 * priority), rte_hash with bulk lookups for the LB flow table and the
 * L3FWD route table. One core, rx port 0 -> tx port 1, run-to-completion.
 *
 *   chain [EAL args] -- --rules F --routes F --backends F --capacity N
 *                       --duration S [--mbufs N] [--fwd-only]
 *
 * --fwd-only is the I/O ceiling: rx -> tx with no parsing.
 * Prints one JSON line: rx, tx, drops, elapsed_s, mpps, cycles_per_packet.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_acl.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#define BURST 32
#define MAX_RULES 100000
#define MAX_BACKENDS 1024

enum { D_PARSE, D_ACL, D_LB_FULL, D_TTL, D_NO_ROUTE, D_TX_FULL, D_N };
static const char *dname[D_N] = {"parse", "acl", "lb_full", "ttl", "no_route", "tx_full"};

struct acl_key {            /* rte_acl input, network byte order */
	uint8_t proto;
	uint8_t pad[3];
	uint32_t src, dst;
	uint16_t sport, dport;
};
RTE_ACL_RULE_DEF(acl4_rule, 5);
static struct rte_acl_field_def acl_defs[5] = {
	{RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, offsetof(struct acl_key, proto)},
	{RTE_ACL_FIELD_TYPE_MASK, 4, 1, 1, offsetof(struct acl_key, src)},
	{RTE_ACL_FIELD_TYPE_MASK, 4, 2, 2, offsetof(struct acl_key, dst)},
	{RTE_ACL_FIELD_TYPE_RANGE, 2, 3, 3, offsetof(struct acl_key, sport)},
	{RTE_ACL_FIELD_TYPE_RANGE, 2, 4, 3, offsetof(struct acl_key, dport)},
};

struct flow_key { uint32_t src, dst; uint16_t sport, dport; uint8_t proto, pad[3]; };

static struct rte_acl_ctx *acl;
static uint8_t *rule_allow;
static uint32_t nrules;
static struct rte_hash *flows, *routes;
static uint32_t flow_count, capacity;
static uint32_t be_ip[MAX_BACKENDS];
static uint16_t be_port[MAX_BACKENDS];
static uint32_t nbe;
static volatile int stop;

static void on_signal(int s) { (void)s; stop = 1; }

static void die(const char *msg, const char *arg)
{
	fprintf(stderr, "chain: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(2);
}

static inline uint32_t fmix32(uint32_t h)
{
	h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
	return h;
}

/* pynf.hashing.hash5, bit for bit: the LB picks the same backends */
static inline uint32_t hash5(uint32_t s, uint32_t d, uint16_t sp, uint16_t dp, uint8_t p)
{
	return fmix32((s * 0x9E3779B1u) ^ (d * 0x85EBCA77u) ^ ((((uint32_t)sp << 16) | dp) * 0xC2B2AE3Du)
		      ^ ((uint32_t)p * 0x27D4EB2Fu));
}

static uint32_t parse_ip(const char *s)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		die("bad address", s);
	return ntohl(a.s_addr);
}

static void load_rules(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	struct acl4_rule *rules = calloc(MAX_RULES, sizeof(*rules));
	if (!f || !rules)
		die("cannot read rules", path);
	rule_allow = calloc(MAX_RULES + 1, 1);
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '#');
		if (p) *p = 0;
		/* '@a.b.c.d/len a.b.c.d/len lo : hi lo : hi proto/mask [flags] [allow|deny]' */
		for (p = line; *p; p++) if (*p == ':' || *p == '/' || *p == '\t') *p = ' ';
		char *t[16]; int n = 0;
		for (char *tok = strtok(line, " \r\n"); tok && n < 16; tok = strtok(NULL, " \r\n"))
			t[n++] = tok;
		if (n == 0) continue;
		if (n < 10 || t[0][0] != '@') die("bad rule line", t[0]);
		struct acl4_rule *r = &rules[nrules];
		r->field[1].value.u32 = parse_ip(t[0] + 1);
		r->field[1].mask_range.u32 = atoi(t[1]);
		r->field[2].value.u32 = parse_ip(t[2]);
		r->field[2].mask_range.u32 = atoi(t[3]);
		r->field[3].value.u16 = atoi(t[4]);
		r->field[3].mask_range.u16 = atoi(t[5]);
		r->field[4].value.u16 = atoi(t[6]);
		r->field[4].mask_range.u16 = atoi(t[7]);
		r->field[0].value.u8 = strtoul(t[8], NULL, 0);
		r->field[0].mask_range.u8 = strtoul(t[9], NULL, 0);
		int k = 10;
		if (n > k + 1 && strncmp(t[k], "0x", 2) == 0) k += 2;      /* ClassBench flags */
		rule_allow[nrules] = (n > k && strcmp(t[k], "allow") == 0);
		/* first match wins: earlier lines get higher priority */
		r->data.priority = RTE_ACL_MAX_PRIORITY - nrules;
		r->data.category_mask = 1;
		r->data.userdata = nrules + 1;
		if (++nrules == MAX_RULES) break;
	}
	fclose(f);
	struct rte_acl_param prm = { "chain_acl", SOCKET_ID_ANY, RTE_ACL_RULE_SZ(5), MAX_RULES };
	acl = rte_acl_create(&prm);
	if (!acl) die("rte_acl_create failed", NULL);
	if (nrules && rte_acl_add_rules(acl, (struct rte_acl_rule *)rules, nrules) < 0)
		die("rte_acl_add_rules failed", NULL);
	struct rte_acl_config cfg = { .num_categories = 1, .num_fields = 5 };
	memcpy(cfg.defs, acl_defs, sizeof(acl_defs));
	if (rte_acl_build(acl, &cfg) < 0) die("rte_acl_build failed", NULL);
	free(rules);
}

static void load_backends(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[256];
	if (!f) die("cannot read backends", path);
	while (fgets(line, sizeof(line), f) && nbe < MAX_BACKENDS) {
		char *c = strchr(line, '#'); if (c) *c = 0;
		char *colon = strrchr(line, ':');
		if (!colon) continue;
		*colon = 0;
		be_ip[nbe] = parse_ip(line);
		be_port[nbe++] = atoi(colon + 1);
	}
	fclose(f);
	if (!nbe) die("no backends", path);
}

static void load_routes(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[256], ip[64];
	unsigned port, n = 0;
	if (!f) die("cannot read routes", path);
	while (fgets(line, sizeof(line), f)) n++;
	rewind(f);
	struct rte_hash_parameters hp = { .name = "chain_routes", .entries = n < 1024 ? 1024 : n,
		.key_len = 4, .hash_func = rte_jhash, .socket_id = SOCKET_ID_ANY,
		.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE };
	routes = rte_hash_create(&hp);
	if (!routes) die("rte_hash_create(routes) failed", NULL);
	while (fgets(line, sizeof(line), f)) {
		char *c = strchr(line, '#'); if (c) *c = 0;
		if (sscanf(line, "%63s %u", ip, &port) != 2) continue;
		uint32_t k = htonl(parse_ip(ip));
		rte_hash_add_key_data(routes, &k, (void *)(uintptr_t)port);
	}
	fclose(f);
}

static inline uint16_t csum_adj(uint16_t ck, uint32_t delta)   /* RFC 1624 eqn. 3 */
{
	uint32_t s = (uint16_t)~ck + delta;
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	return ~s & 0xFFFF;
}
#define D16(o, n) ((uint32_t)(uint16_t)~(o) + (uint16_t)(n))

struct pkt {
	struct rte_mbuf *m;
	struct rte_ipv4_hdr *ip;
	uint8_t *l4;
	int alive, l4ok, frag, port;
	struct flow_key fk;
	struct acl_key ak;
};

static int parse(struct pkt *p)
{
	struct rte_mbuf *m = p->m;
	uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t len = m->data_len, l3 = 14;
	if (m->nb_segs != 1 || len < 14) return 0;
	uint16_t et = (d[12] << 8) | d[13];
	if (et == 0x8100 || et == 0x88A8) {
		if (len < 18) return 0;
		et = (d[16] << 8) | d[17];
		l3 = 18;
		if (et == 0x8100 || et == 0x88A8) return 0;
	}
	if (et != 0x0800 || len < l3 + 20) return 0;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(d + l3);
	uint32_t ihl = (ip->version_ihl & 15) * 4, tot = ntohs(ip->total_length);
	if ((ip->version_ihl >> 4) != 4 || ihl < 20 || l3 + ihl > len || tot < ihl || l3 + tot > len)
		return 0;
	uint16_t fw = ntohs(ip->fragment_offset);
	p->ip = ip;
	p->l4 = (uint8_t *)ip + ihl;
	p->frag = (fw & 0x1FFF) ? 2 : ((fw & 0x2000) ? 1 : 0);
	p->l4ok = 0;
	uint16_t sp = 0, dp = 0;
	if (p->frag != 2 && (ip->next_proto_id == 6 || ip->next_proto_id == 17)) {
		uint32_t pay = tot - ihl;
		if (ip->next_proto_id == 6) {
			if (pay < 20) return 0;
			uint32_t doff = (p->l4[12] >> 4) * 4;
			if (doff < 20 || doff > pay) return 0;
		} else if (pay < 8) {
			return 0;
		}
		sp = (p->l4[0] << 8) | p->l4[1];
		dp = (p->l4[2] << 8) | p->l4[3];
		p->l4ok = 1;
	}
	p->ak.proto = ip->next_proto_id;
	p->ak.src = ip->src_addr;
	p->ak.dst = ip->dst_addr;
	p->ak.sport = htons(sp);
	p->ak.dport = htons(dp);
	memset(&p->fk, 0, sizeof(p->fk));
	p->fk.src = ip->src_addr; p->fk.dst = ip->dst_addr;
	p->fk.sport = sp; p->fk.dport = dp; p->fk.proto = ip->next_proto_id;
	return 1;
}

static void rewrite_l4(struct pkt *p, uint32_t old_dst, uint32_t new_dst, uint16_t old_dp, uint16_t new_dp)
{
	uint32_t od = ntohl(old_dst), nd = ntohl(new_dst);
	uint32_t delta = D16(od >> 16, nd >> 16) + D16(od & 0xFFFF, nd & 0xFFFF);
	p->ip->hdr_checksum = htons(csum_adj(ntohs(p->ip->hdr_checksum), delta));
	p->ip->dst_addr = new_dst;
	delta += D16(old_dp, new_dp);
	p->l4[2] = new_dp >> 8; p->l4[3] = new_dp & 0xFF;
	uint8_t *ck = p->l4 + (p->ip->next_proto_id == 6 ? 16 : 6);
	uint16_t c = (ck[0] << 8) | ck[1];
	if (p->ip->next_proto_id == 17 && c == 0) return;
	c = csum_adj(c, delta);
	if (p->ip->next_proto_id == 17 && c == 0) c = 0xFFFF;
	ck[0] = c >> 8; ck[1] = c & 0xFF;
}

int main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	if (n < 0) die("EAL init failed", rte_strerror(rte_errno));
	argc -= n; argv += n;
	const char *rules_f = NULL, *routes_f = NULL, *be_f = NULL;
	double duration = 5;
	int fwd_only = 0;
	static struct option lo[] = {
		{"rules", 1, 0, 'r'}, {"routes", 1, 0, 'o'}, {"backends", 1, 0, 'b'},
		{"capacity", 1, 0, 'c'}, {"duration", 1, 0, 'd'}, {"fwd-only", 0, 0, 'f'},
		{"mbufs", 1, 0, 'm'}, {0, 0, 0, 0}};
	unsigned mbufs = 65535;
	int c;
	capacity = 2048;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r': rules_f = optarg; break;
		case 'o': routes_f = optarg; break;
		case 'b': be_f = optarg; break;
		case 'c': capacity = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'f': fwd_only = 1; break;
		case 'm': mbufs = atoi(optarg); break;
		default: die("usage: chain [EAL] -- --rules F --routes F --backends F [--capacity N] [--duration S] [--fwd-only]", NULL);
		}
	}
	if (!fwd_only) {
		if (!rules_f || !routes_f || !be_f) die("need --rules, --routes and --backends", NULL);
		load_rules(rules_f);
		load_routes(routes_f);
		load_backends(be_f);
		struct rte_hash_parameters hp = { .name = "chain_flows", .entries = capacity,
			.key_len = sizeof(struct flow_key), .hash_func = rte_jhash,
			.socket_id = SOCKET_ID_ANY, .extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE };
		flows = rte_hash_create(&hp);
		if (!flows) die("rte_hash_create(flows) failed", NULL);
	}
	if (rte_eth_dev_count_avail() < 2) die("need 2 ports (rx 0, tx 1)", NULL);
	struct rte_mempool *mp = rte_pktmbuf_pool_create("chain_pool", mbufs, 256, 0,
			RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!mp) die("mempool", rte_strerror(rte_errno));
	struct rte_eth_conf conf = {0};
	for (uint16_t port = 0; port < 2; port++) {
		if (rte_eth_dev_configure(port, 1, 1, &conf) < 0 ||
		    rte_eth_rx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), NULL, mp) < 0 ||
		    rte_eth_tx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), NULL) < 0 ||
		    rte_eth_dev_start(port) < 0)
			die("port setup failed", NULL);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	uint64_t drops[D_N] = {0}, rx = 0, tx = 0, busy = 0;
	uint64_t hz = rte_get_tsc_hz(), t0 = rte_rdtsc(), end = t0 + (uint64_t)(duration * hz);
	struct rte_mbuf *bufs[BURST], *out[BURST], *drop[BURST];
	struct pkt pk[BURST];
	const uint8_t *acl_in[BURST];
	uint32_t acl_res[BURST];
	const void *keys[BURST];
	void *data[BURST];
	int32_t pos[BURST];
	uint64_t hit;

	while (!stop && rte_rdtsc() < end) {
		uint16_t nb = rte_eth_rx_burst(0, 0, bufs, BURST);
		if (nb == 0) continue;
		uint64_t ts = rte_rdtsc();
		rx += nb;
		if (fwd_only) {
			uint16_t s = rte_eth_tx_burst(1, 0, bufs, nb);
			tx += s;
			if (s < nb) { rte_pktmbuf_free_bulk(bufs + s, nb - s); drops[D_TX_FULL] += nb - s; }
			busy += rte_rdtsc() - ts;
			continue;
		}
		for (int i = 0; i < nb; i++)
			rte_prefetch0(rte_pktmbuf_mtod(bufs[i], void *));
		uint32_t na = 0;
		for (int i = 0; i < nb; i++) {
			pk[i].m = bufs[i];
			pk[i].alive = parse(&pk[i]);
			if (!pk[i].alive) { drops[D_PARSE]++; continue; }
			acl_in[na] = (const uint8_t *)&pk[i].ak;
			pos[na++] = i;
		}
		/* ACL */
		if (na && nrules) {
			rte_acl_classify(acl, acl_in, acl_res, na, 1);
			for (uint32_t k = 0; k < na; k++)
				if (acl_res[k] && !rule_allow[acl_res[k] - 1]) {
					pk[pos[k]].alive = 0;
					drops[D_ACL]++;
				}
		}
		/* LB: bulk lookup of the TCP/UDP flows, add the misses */
		uint32_t nl = 0;
		for (int i = 0; i < nb; i++)
			if (pk[i].alive && pk[i].l4ok && pk[i].frag == 0) {
				keys[nl] = &pk[i].fk;
				pos[nl++] = i;
			}
		if (nl) {
			rte_hash_lookup_bulk_data(flows, keys, nl, &hit, data);
			for (uint32_t k = 0; k < nl; k++) {
				struct pkt *p = &pk[pos[k]];
				uintptr_t be;
				if (hit & (1ULL << k)) {
					be = (uintptr_t)data[k];
				} else {
					if (flow_count >= capacity) { p->alive = 0; drops[D_LB_FULL]++; continue; }
					be = (hash5(ntohl(p->fk.src), ntohl(p->fk.dst), p->fk.sport, p->fk.dport,
						    p->fk.proto) >> 8) % nbe;
					if (rte_hash_add_key_data(flows, &p->fk, (void *)be) < 0) {
						p->alive = 0; drops[D_LB_FULL]++; continue;
					}
					flow_count++;
				}
				uint32_t nd = htonl(be_ip[be]);
				rewrite_l4(p, p->ip->dst_addr, nd, p->fk.dport, be_port[be]);
			}
		}
		/* L3FWD: TTL, then a bulk lookup on the destination */
		uint32_t nr = 0;
		for (int i = 0; i < nb; i++) {
			if (!pk[i].alive) continue;
			if (pk[i].ip->time_to_live <= 1) { pk[i].alive = 0; drops[D_TTL]++; continue; }
			keys[nr] = &pk[i].ip->dst_addr;
			pos[nr++] = i;
		}
		uint32_t no = 0, nd = 0;
		if (nr) {
			rte_hash_lookup_bulk_data(routes, keys, nr, &hit, data);
			for (uint32_t k = 0; k < nr; k++) {
				struct pkt *p = &pk[pos[k]];
				if (!(hit & (1ULL << k))) { p->alive = 0; drops[D_NO_ROUTE]++; continue; }
				unsigned port = (uintptr_t)data[k];
				uint16_t old = (p->ip->time_to_live << 8) | p->ip->next_proto_id;
				p->ip->time_to_live--;
				p->ip->hdr_checksum = htons(csum_adj(ntohs(p->ip->hdr_checksum),
					D16(old, old - 0x100)));
				uint8_t *e = rte_pktmbuf_mtod(p->m, uint8_t *);
				static const uint8_t dmac[5] = {2, 0, 0, 0, 1}, smac[5] = {2, 0, 0, 0, 0};
				memcpy(e, dmac, 5); e[5] = port;
				memcpy(e + 6, smac, 5); e[11] = port;
				p->port = port;
			}
		}
		for (int i = 0; i < nb; i++) {
			if (pk[i].alive) out[no++] = pk[i].m;
			else drop[nd++] = pk[i].m;
		}
		if (nd) rte_pktmbuf_free_bulk(drop, nd);
		uint16_t s = no ? rte_eth_tx_burst(1, 0, out, no) : 0;
		tx += s;
		if (s < no) { rte_pktmbuf_free_bulk(out + s, no - s); drops[D_TX_FULL] += no - s; }
		busy += rte_rdtsc() - ts;
	}
	double el = (double)(rte_rdtsc() - t0) / hz;
	printf("{\"rx\": %" PRIu64 ", \"tx\": %" PRIu64 ", \"elapsed_s\": %.4f, \"mpps\": %.4f, "
	       "\"cycles_per_packet\": %.1f, \"tsc_hz\": %" PRIu64 ", \"drops\": {",
	       rx, tx, el, rx / el / 1e6, rx ? (double)busy / rx : 0.0, hz);
	for (int k = 0; k < D_N; k++)
		printf("%s\"%s\": %" PRIu64, k ? ", " : "", dname[k], drops[k]);
	printf("}}\n");
	for (uint16_t port = 0; port < 2; port++) { rte_eth_dev_stop(port); rte_eth_dev_close(port); }
	rte_eal_cleanup();
	return 0;
}
