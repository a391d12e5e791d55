/* The DPDK side of pynf: a thin layer over EAL, ethdev, mempool and ring,
 * shaped for calls from compiled Numba loops (plain integers and arrays, no
 * structs on the fast path). See pynf_dpdk.h for the contract. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_common.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "pynf_dpdk.h"

int pynf_eal_init(int argc, char **argv)
{
	int ret = rte_eal_init(argc, argv);
	return ret < 0 ? -rte_errno : ret;
}

void pynf_eal_cleanup(void)
{
	rte_eal_cleanup();
}

const char *pynf_strerror(int err)
{
	return rte_strerror(err < 0 ? -err : err);
}

int pynf_thread_register(void)
{
	/* Gives a non-EAL thread an lcore id, so that mempool per-lcore
	 * caches serve it (without one every alloc/free hits the ring). */
	if (rte_lcore_id() != LCORE_ID_ANY)
		return (int)rte_lcore_id();
	if (rte_thread_register() < 0)
		return -rte_errno;
	return (int)rte_lcore_id();
}

void pynf_thread_unregister(void)
{
	/* Gives the lcore id back, so that runs in one process do not use up
	 * RTE_MAX_LCORE. Objects left in its mempool cache stay available. */
	if (rte_lcore_id() != LCORE_ID_ANY && rte_lcore_id() != rte_get_main_lcore())
		rte_thread_unregister();
}

int pynf_lcore_id(void)
{
	unsigned id = rte_lcore_id();
	return id == LCORE_ID_ANY ? -1 : (int)id;
}

int pynf_dev_probe(const char *devargs)
{
	int ret = rte_dev_probe(devargs);
	return ret < 0 ? ret : 0;
}

int pynf_dev_remove_port(uint16_t port)
{
	struct rte_eth_dev_info info;
	int ret = rte_eth_dev_info_get(port, &info);
	if (ret < 0)
		return ret;
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
	if (info.device == NULL)
		return 0;
	return rte_dev_remove(info.device);
}

int pynf_port_count(void)
{
	return rte_eth_dev_count_avail();
}

int pynf_port_next(int after)
{
	uint64_t id = rte_eth_find_next_owned_by((uint16_t)(after + 1), RTE_ETH_DEV_NO_OWNER);
	return id >= RTE_MAX_ETHPORTS ? -1 : (int)id;
}

int pynf_port_by_name(const char *name)
{
	uint16_t port;
	int ret = rte_eth_dev_get_port_by_name(name, &port);
	return ret < 0 ? ret : port;
}

int pynf_port_info_get(uint16_t port, pynf_port_info *out)
{
	struct rte_eth_dev_info info;
	struct rte_ether_addr mac;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = rte_eth_dev_info_get(port, &info);
	if (ret < 0)
		return ret;
	rte_eth_dev_get_name_by_port(port, out->name);
	snprintf(out->driver, sizeof(out->driver), "%s", info.driver_name ? info.driver_name : "?");
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	out->socket = rte_eth_dev_socket_id(port);
	out->rss_offloads = info.flow_type_rss_offloads;
	if (rte_eth_macaddr_get(port, &mac) == 0)
		memcpy(out->mac, mac.addr_bytes, 6);
	return 0;
}

int pynf_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t nrxd,
		    uint16_t ntxd, void *pool, int rss)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int socket = rte_eth_dev_socket_id(port);
	int ret;

	memset(&conf, 0, sizeof(conf));
	ret = rte_eth_dev_info_get(port, &info);
	if (ret < 0)
		return ret;
	if (rss && nrxq > 1 && info.flow_type_rss_offloads) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP)
			& info.flow_type_rss_offloads;
	}
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
	ret = rte_eth_dev_configure(port, nrxq, ntxq, &conf);
	if (ret < 0)
		return ret;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (ret < 0)
		return ret;
	for (uint16_t q = 0; q < nrxq; q++) {
		ret = rte_eth_rx_queue_setup(port, q, nrxd, socket < 0 ? SOCKET_ID_ANY : socket,
					     NULL, (struct rte_mempool *)pool);
		if (ret < 0)
			return ret;
	}
	for (uint16_t q = 0; q < ntxq; q++) {
		ret = rte_eth_tx_queue_setup(port, q, ntxd, socket < 0 ? SOCKET_ID_ANY : socket, NULL);
		if (ret < 0)
			return ret;
	}
	ret = rte_eth_dev_start(port);
	if (ret < 0)
		return ret;
	rte_eth_promiscuous_enable(port);   /* not all PMDs support it: not an error */
	return 0;
}

int pynf_port_stop(uint16_t port)
{
	return rte_eth_dev_stop(port);
}

/* out: ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf */
int pynf_port_stats(uint16_t port, uint64_t *out)
{
	struct rte_eth_stats st;
	int ret = rte_eth_stats_get(port, &st);
	if (ret < 0)
		return ret;
	out[0] = st.ipackets;
	out[1] = st.opackets;
	out[2] = st.ibytes;
	out[3] = st.obytes;
	out[4] = st.imissed;
	out[5] = st.ierrors;
	out[6] = st.oerrors;
	out[7] = st.rx_nombuf;
	return 0;
}

void *pynf_pool_create(const char *name, uint32_t n, uint32_t cache, uint16_t data_room, int socket)
{
	return rte_pktmbuf_pool_create(name, n, cache, 0, data_room ? data_room : RTE_MBUF_DEFAULT_BUF_SIZE,
				       socket < 0 ? SOCKET_ID_ANY : socket);
}

void pynf_pool_free(void *pool)
{
	rte_mempool_free((struct rte_mempool *)pool);
}

uint32_t pynf_pool_in_use(void *pool)
{
	return rte_mempool_in_use_count((struct rte_mempool *)pool);
}

struct span { uint64_t lo, hi; };

static void span_cb(struct rte_mempool *mp __rte_unused, void *opaque,
		    struct rte_mempool_memhdr *memhdr, unsigned mem_idx __rte_unused)
{
	struct span *s = opaque;
	uint64_t a = (uint64_t)(uintptr_t)memhdr->addr;
	if (a < s->lo)
		s->lo = a;
	if (a + memhdr->len > s->hi)
		s->hi = a + memhdr->len;
}

int pynf_pool_span(void *pool, uint64_t *lo, uint64_t *hi)
{
	struct span s = { UINT64_MAX, 0 };
	if (rte_mempool_mem_iter((struct rte_mempool *)pool, span_cb, &s) == 0)
		return -ENOENT;
	*lo = s.lo;
	*hi = s.hi;
	return 0;
}

static inline void locate(struct rte_mbuf *m, int64_t *off, int32_t *len, uint64_t base)
{
	*off = (int64_t)((uint64_t)(uintptr_t)rte_pktmbuf_mtod(m, char *) - base);
	*len = m->data_len;
}

uint16_t pynf_rx(uint16_t port, uint16_t queue, uint64_t *bufs, int64_t *offs,
		 int32_t *lens, uint16_t n, uint64_t base, int64_t *oversize)
{
	struct rte_mbuf **m = (struct rte_mbuf **)bufs;
	uint16_t got = rte_eth_rx_burst(port, queue, m, n);
	uint16_t kept = 0;

	for (uint16_t i = 0; i < got; i++) {
		if (unlikely(m[i]->nb_segs != 1)) {
			rte_pktmbuf_free(m[i]);
			(*oversize)++;
			continue;
		}
		m[kept] = m[i];
		locate(m[kept], &offs[kept], &lens[kept], base);
		kept++;
	}
	return kept;
}

uint16_t pynf_tx(uint16_t port, uint16_t queue, uint64_t *bufs, uint16_t n)
{
	struct rte_mbuf **m = (struct rte_mbuf **)bufs;
	uint16_t sent = rte_eth_tx_burst(port, queue, m, n);
	if (unlikely(sent < n))
		rte_pktmbuf_free_bulk(m + sent, n - sent);
	return sent;
}

void pynf_free_bulk(uint64_t *bufs, uint32_t n)
{
	rte_pktmbuf_free_bulk((struct rte_mbuf **)bufs, n);
}

uint64_t pynf_mbuf_alloc(void *pool, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc((struct rte_mempool *)pool);
	if (m == NULL)
		return 0;
	if (rte_pktmbuf_append(m, len) == NULL) {
		rte_pktmbuf_free(m);
		return 0;
	}
	return (uint64_t)(uintptr_t)m;
}

void pynf_mbuf_locate(uint64_t *bufs, int64_t *offs, int32_t *lens, int32_t *in_ports,
		      uint32_t n, uint64_t base)
{
	for (uint32_t i = 0; i < n; i++) {
		struct rte_mbuf *m = (struct rte_mbuf *)(uintptr_t)bufs[i];
		locate(m, &offs[i], &lens[i], base);
		in_ports[i] = m->port;
	}
}

void *pynf_rte_ring_create(const char *name, uint32_t size, int socket)
{
	return rte_ring_create(name, size, socket < 0 ? SOCKET_ID_ANY : socket,
			       RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
}

void pynf_rte_ring_free(void *r)
{
	rte_ring_free((struct rte_ring *)r);
}

uint32_t pynf_rte_ring_enqueue(void *r, uint64_t *objs, uint32_t n)
{
	return rte_ring_enqueue_burst((struct rte_ring *)r, (void **)objs, n, NULL);
}

uint32_t pynf_rte_ring_dequeue(void *r, uint64_t *objs, uint32_t n)
{
	return rte_ring_dequeue_burst((struct rte_ring *)r, (void **)objs, n, NULL);
}

uint32_t pynf_rte_ring_count(void *r)
{
	return rte_ring_count((struct rte_ring *)r);
}
