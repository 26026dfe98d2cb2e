#define _GNU_SOURCE
/* See shim.h. Compiled with the exact `pkg-config --cflags libdpdk` flags (it needs DPDK's -march). */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_thash.h>
#include <string.h>
#include <rte_mempool.h>
#include <rte_mbuf_pool_ops.h>
#include "shim.h"

uint16_t tack_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t tack_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *tack_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int tack_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void tack_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *tack_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *tack_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *tack_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int tack_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void *tack_rte_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t tack_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t tack_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
int tack_rte_pktmbuf_is_contiguous(const struct rte_mbuf *m) { return rte_pktmbuf_is_contiguous(m); }
int tack_rte_pktmbuf_linearize(struct rte_mbuf *m) { return rte_pktmbuf_linearize(m); }
void tack_rte_pktmbuf_reset(struct rte_mbuf *m) { rte_pktmbuf_reset(m); }

unsigned tack_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space)
{
	return rte_ring_enqueue_burst(r, obj_table, n, free_space);
}

unsigned tack_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available)
{
	return rte_ring_dequeue_burst(r, obj_table, n, available);
}

unsigned tack_rte_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

int tack_rte_errno(void) { return rte_errno; }
unsigned tack_rte_lcore_id(void) { return rte_lcore_id(); }
uint64_t tack_rte_rdtsc(void) { return rte_rdtsc(); }

uint32_t tack_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key)
{
	return rte_softrss(input_tuple, input_len, rss_key);
}

void tack_rte_prefetch0(const volatile void *p) { rte_prefetch0(p); }

FILE *tack_log_stream(ssize_t (*write)(void *cookie, const char *buf, size_t size))
{
	cookie_io_functions_t funcs = { .read = NULL, .write = write, .seek = NULL, .close = NULL };
	FILE *f = fopencookie(NULL, "w", funcs);
	if (f != NULL)
		setvbuf(f, NULL, _IOLBF, 0);
	return f;
}

struct rte_mempool *tack_pktmbuf_pool_create_no_spread(const char *name, unsigned n,
	unsigned cache_size, uint16_t data_room_size, int socket_id)
{
	/* rte_pktmbuf_pool_create_by_ops, with RTE_MEMPOOL_F_NO_SPREAD */
	struct rte_pktmbuf_pool_private priv;
	struct rte_mempool *mp;
	int ret;

	memset(&priv, 0, sizeof(priv));
	priv.mbuf_data_room_size = data_room_size;
	mp = rte_mempool_create_empty(name, n, sizeof(struct rte_mbuf) + data_room_size,
		cache_size, sizeof(struct rte_pktmbuf_pool_private), socket_id,
		RTE_MEMPOOL_F_NO_SPREAD);
	if (mp == NULL)
		return NULL;
	ret = rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL);
	if (ret != 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_pktmbuf_pool_init(mp, &priv);
	ret = rte_mempool_populate_default(mp);
	if (ret < 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
}

unsigned tack_rte_mempool_obj_size(const struct rte_mempool *mp)
{
	return mp->header_size + mp->elt_size + mp->trailer_size;
}
