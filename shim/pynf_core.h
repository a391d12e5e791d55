/* pynf shim, DPDK-free part: lock-free rings and the TSC.
 *
 * This header is also the cffi cdef (shim/build_core.py), so it holds plain
 * declarations only: no #include, no macros, no inline bodies.
 *
 * The ring follows DPDK's rte_ring: a power-of-two array of 64-bit handles
 * with producer and consumer head/tail indices, each pair on its own cache
 * line, single- or multi-producer/consumer chosen at creation. Handles are
 * buffer indices (in-memory I/O) or mbuf pointers; packets are never copied.
 */

typedef struct pynf_ring pynf_ring;

/* flags for pynf_ring_create */
#define PYNF_RING_SP 1
#define PYNF_RING_SC 2

/* size: a power of two >= 2; returns NULL on bad size or no memory. */
pynf_ring *pynf_ring_create(uint32_t size, uint32_t flags);
void pynf_ring_free(pynf_ring *r);

/* Burst operations: move up to n handles, return how many moved. */
uint32_t pynf_ring_enqueue_burst(pynf_ring *r, const uint64_t *objs, uint32_t n);
uint32_t pynf_ring_dequeue_burst(pynf_ring *r, uint64_t *objs, uint32_t n);

uint32_t pynf_ring_count(const pynf_ring *r);
uint32_t pynf_ring_capacity(const pynf_ring *r);

uint64_t pynf_rdtsc(void);
void pynf_pause(void);
void pynf_yield(void);
