/* counters.h -- single-writer counters that another thread reads.
 *
 * Each publisher owns its counter block and is its only writer; the stats
 * thread reads all blocks.  Relaxed atomic loads and stores make that
 * well-defined without a locked instruction on the hot path. */
#ifndef MRTE_COUNTERS_H
#define MRTE_COUNTERS_H

#include <stdint.h>

#define CTR_ADD(field, n)                                                                          \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (uint64_t)(n),    \
			 __ATOMIC_RELAXED)
#define CTR_INC(field) CTR_ADD(field, 1)
#define CTR_SET(field, v) __atomic_store_n(&(field), (uint64_t)(v), __ATOMIC_RELAXED)
#define CTR_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

#endif
