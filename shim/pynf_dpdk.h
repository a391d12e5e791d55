/* pynf shim, DPDK part: EAL, ports, mempools, bursts, rte_ring.
 *
 * Also the cffi cdef (shim/build_dpdk.py): plain declarations only.
 * Functions return >= 0 on success and a negative errno on failure;
 * pynf_strerror() turns it into DPDK's text. Objects cross as opaque
 * pointers; packet handles are mbuf addresses (uint64_t). */

typedef struct pynf_port_info {
	char name[64];
	char driver[64];
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	int32_t socket;
	uint64_t rss_offloads;     /* 0: the port cannot spread flows (no RSS) */
	uint8_t mac[6];
} pynf_port_info;

int pynf_eal_init(int argc, char **argv);
void pynf_eal_cleanup(void);
const char *pynf_strerror(int err);
int pynf_thread_register(void);
void pynf_thread_unregister(void);
int pynf_lcore_id(void);

int pynf_dev_probe(const char *devargs);
int pynf_dev_remove_port(uint16_t port);
int pynf_port_count(void);
int pynf_port_next(int after);            /* next valid port id > after, or -1 */
int pynf_port_by_name(const char *name);
int pynf_port_info_get(uint16_t port, pynf_port_info *out);
int pynf_port_setup(uint16_t port, uint16_t nrxq, uint16_t ntxq, uint16_t nrxd,
                    uint16_t ntxd, void *pool, int rss);
int pynf_port_stop(uint16_t port);
int pynf_port_stats(uint16_t port, uint64_t *out);   /* 8 counters, see dpdk.c */

/* data_room: headroom + data bytes per mbuf; 0: RTE_MBUF_DEFAULT_BUF_SIZE */
void *pynf_pool_create(const char *name, uint32_t n, uint32_t cache, uint16_t data_room, int socket);
void pynf_pool_free(void *pool);
uint32_t pynf_pool_in_use(void *pool);
int pynf_pool_span(void *pool, uint64_t *lo, uint64_t *hi);

/* Receive up to n packets: mbuf handles into bufs, data offsets (from base)
 * into offs, frame lengths into lens. Multi-segment mbufs (frames larger
 * than the data room) are freed here and counted in *oversize: they are
 * received and dropped, not lost. Returns the number of packets kept. */
uint16_t pynf_rx(uint16_t port, uint16_t queue, uint64_t *bufs, int64_t *offs,
                 int32_t *lens, uint16_t n, uint64_t base, int64_t *oversize);
/* Transmit n packets; those the port refuses are freed. Returns sent. */
uint16_t pynf_tx(uint16_t port, uint16_t queue, uint64_t *bufs, uint16_t n);
void pynf_free_bulk(uint64_t *bufs, uint32_t n);
/* A new single-segment mbuf of len data bytes (the slow path's own
 * packets), or 0 when the pool is empty or len does not fit. */
uint64_t pynf_mbuf_alloc(void *pool, uint16_t len);
/* offs, lens and input ports of n mbufs (after a ring hop) */
void pynf_mbuf_locate(uint64_t *bufs, int64_t *offs, int32_t *lens, int32_t *in_ports,
                      uint32_t n, uint64_t base);

void *pynf_rte_ring_create(const char *name, uint32_t size, int socket);
void pynf_rte_ring_free(void *r);
uint32_t pynf_rte_ring_enqueue(void *r, uint64_t *objs, uint32_t n);
uint32_t pynf_rte_ring_dequeue(void *r, uint64_t *objs, uint32_t n);
uint32_t pynf_rte_ring_count(void *r);
