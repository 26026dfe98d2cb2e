/*
 * C shim for DPDK's static-inline functions, which bindgen cannot bind.
 * Each tack_* function is a plain exported wrapper around the inline of the same name.
 */
#ifndef TACK_SHIM_H
#define TACK_SHIM_H

#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

uint16_t tack_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t tack_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *tack_rte_pktmbuf_alloc(struct rte_mempool *mp);
struct rte_mempool *tack_pktmbuf_pool_create_no_spread(const char *name, unsigned n,
	unsigned cache_size, uint16_t data_room_size, int socket_id);
unsigned tack_rte_mempool_obj_size(const struct rte_mempool *mp);
int tack_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void tack_rte_pktmbuf_free(struct rte_mbuf *m);
char *tack_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *tack_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *tack_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int tack_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void *tack_rte_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t tack_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t tack_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
int tack_rte_pktmbuf_is_contiguous(const struct rte_mbuf *m);
int tack_rte_pktmbuf_linearize(struct rte_mbuf *m);
void tack_rte_pktmbuf_reset(struct rte_mbuf *m);

unsigned tack_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space);
unsigned tack_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available);
unsigned tack_rte_ring_count(const struct rte_ring *r);

int tack_rte_errno(void);
unsigned tack_rte_lcore_id(void);
uint64_t tack_rte_rdtsc(void);
uint32_t tack_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);
void tack_rte_prefetch0(const volatile void *p);

#include <stdio.h>
#include <sys/types.h>
/* A write-only stdio stream whose writes go to `write` (used to bridge DPDK's log into Rust). */
FILE *tack_log_stream(ssize_t (*write)(void *cookie, const char *buf, size_t size));

#endif
