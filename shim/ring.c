/* Lock-free bounded ring of 64-bit handles (C11 atomics).
 *
 * The head/tail protocol is DPDK's rte_ring: a producer reserves slots by
 * moving prod_head (a CAS when several producers share the ring), copies its
 * handles, then publishes them by moving prod_tail in reservation order; the
 * consumer side mirrors it. Indices are free-running uint32 counters, so
 * "count = prod_tail - cons_tail" is correct across wrap-around.
 *
 * NB: each index pair sits on its own cache line; putting producer and
 * consumer indices on one line makes every burst a coherence miss on both
 * cores (false sharing), which is most of what a ring hop costs.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <x86intrin.h>

#include "pynf_core.h"

#define CACHE_LINE 64

struct pynf_ring {
	uint32_t size;
	uint32_t mask;
	uint32_t flags;
	_Alignas(CACHE_LINE) _Atomic uint32_t prod_head;
	_Atomic uint32_t prod_tail;
	_Alignas(CACHE_LINE) _Atomic uint32_t cons_head;
	_Atomic uint32_t cons_tail;
	_Alignas(CACHE_LINE) uint64_t objs[];
};

pynf_ring *pynf_ring_create(uint32_t size, uint32_t flags)
{
	if (size < 2 || (size & (size - 1)) != 0 || size > (1u << 30))
		return NULL;
	pynf_ring *r = aligned_alloc(CACHE_LINE,
		sizeof(*r) + (size_t)size * sizeof(uint64_t));
	if (r == NULL)
		return NULL;
	r->size = size;
	r->mask = size - 1;
	r->flags = flags;
	atomic_init(&r->prod_head, 0);
	atomic_init(&r->prod_tail, 0);
	atomic_init(&r->cons_head, 0);
	atomic_init(&r->cons_tail, 0);
	return r;
}

void pynf_ring_free(pynf_ring *r)
{
	free(r);
}

static inline void copy_in(pynf_ring *r, uint32_t head, const uint64_t *objs, uint32_t n)
{
	uint32_t idx = head & r->mask;
	for (uint32_t i = 0; i < n; i++)
		r->objs[(idx + i) & r->mask] = objs[i];
}

static inline void copy_out(pynf_ring *r, uint32_t head, uint64_t *objs, uint32_t n)
{
	uint32_t idx = head & r->mask;
	for (uint32_t i = 0; i < n; i++)
		objs[i] = r->objs[(idx + i) & r->mask];
}

uint32_t pynf_ring_enqueue_burst(pynf_ring *r, const uint64_t *objs, uint32_t n)
{
	uint32_t head, next, free_entries;

	if (r->flags & PYNF_RING_SP) {
		head = atomic_load_explicit(&r->prod_head, memory_order_relaxed);
		uint32_t ctail = atomic_load_explicit(&r->cons_tail, memory_order_acquire);
		free_entries = r->size - (head - ctail);
		if (n > free_entries)
			n = free_entries;
		if (n == 0)
			return 0;
		next = head + n;
		atomic_store_explicit(&r->prod_head, next, memory_order_relaxed);
	} else {
		head = atomic_load_explicit(&r->prod_head, memory_order_relaxed);
		do {
			uint32_t ctail = atomic_load_explicit(&r->cons_tail, memory_order_acquire);
			uint32_t want = n;
			free_entries = r->size - (head - ctail);
			if (want > free_entries)
				want = free_entries;
			if (want == 0)
				return 0;
			next = head + want;
		} while (!atomic_compare_exchange_weak_explicit(&r->prod_head, &head, next,
				memory_order_relaxed, memory_order_relaxed));
		n = next - head;
	}
	copy_in(r, head, objs, n);
	/* Publish in reservation order: wait for earlier producers. */
	if (!(r->flags & PYNF_RING_SP))
		while (atomic_load_explicit(&r->prod_tail, memory_order_relaxed) != head)
			_mm_pause();
	atomic_store_explicit(&r->prod_tail, next, memory_order_release);
	return n;
}

uint32_t pynf_ring_dequeue_burst(pynf_ring *r, uint64_t *objs, uint32_t n)
{
	uint32_t head, next, entries;

	if (r->flags & PYNF_RING_SC) {
		head = atomic_load_explicit(&r->cons_head, memory_order_relaxed);
		uint32_t ptail = atomic_load_explicit(&r->prod_tail, memory_order_acquire);
		entries = ptail - head;
		if (n > entries)
			n = entries;
		if (n == 0)
			return 0;
		next = head + n;
		atomic_store_explicit(&r->cons_head, next, memory_order_relaxed);
	} else {
		head = atomic_load_explicit(&r->cons_head, memory_order_relaxed);
		do {
			uint32_t ptail = atomic_load_explicit(&r->prod_tail, memory_order_acquire);
			uint32_t want = n;
			entries = ptail - head;
			if (want > entries)
				want = entries;
			if (want == 0)
				return 0;
			next = head + want;
		} while (!atomic_compare_exchange_weak_explicit(&r->cons_head, &head, next,
				memory_order_relaxed, memory_order_relaxed));
		n = next - head;
	}
	copy_out(r, head, objs, n);
	if (!(r->flags & PYNF_RING_SC))
		while (atomic_load_explicit(&r->cons_tail, memory_order_relaxed) != head)
			_mm_pause();
	atomic_store_explicit(&r->cons_tail, next, memory_order_release);
	return n;
}

uint32_t pynf_ring_count(const pynf_ring *r)
{
	uint32_t ptail = atomic_load_explicit(&((pynf_ring *)r)->prod_tail, memory_order_acquire);
	uint32_t ctail = atomic_load_explicit(&((pynf_ring *)r)->cons_tail, memory_order_acquire);
	return ptail - ctail;
}

uint32_t pynf_ring_capacity(const pynf_ring *r)
{
	return r->size;
}

uint64_t pynf_rdtsc(void)
{
	return __rdtsc();
}

void pynf_pause(void)
{
	_mm_pause();
}

void pynf_yield(void)
{
	sched_yield();
}
