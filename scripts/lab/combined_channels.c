/*
 * LD_PRELOAD shim for the lab: DPDK 22.11's net_af_xdp takes the number of
 * queues it may bind from ETHTOOL_GCHANNELS's *combined* count, which a
 * veth does not report (it has separate rx and tx channels), so it refuses
 * queue_count > 1 on a veth. This reports a device's rx/tx channel pairs as
 * combined channels when it reports none; every other ioctl, and devices
 * that report combined channels, are left alone. Built by
 * `scripts/lab.sh up --queues N` (N > 1) into the lab's state directory;
 * used only to run tack on the lab's multi-queue veth.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <sys/ioctl.h>

int ioctl(int fd, unsigned long request, ...)
{
	static int (*real)(int, unsigned long, void *);
	va_list ap;
	void *arg;
	int r;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, void *))dlsym(RTLD_NEXT, "ioctl");
	r = real(fd, request, arg);
	if (r == 0 && request == SIOCETHTOOL && arg) {
		struct ethtool_channels *ch =
			(struct ethtool_channels *)((struct ifreq *)arg)->ifr_data;
		if (ch && ch->cmd == ETHTOOL_GCHANNELS && ch->max_combined == 0 &&
		    ch->rx_count > 1 && ch->rx_count == ch->tx_count) {
			ch->max_combined = ch->max_rx < ch->max_tx ? ch->max_rx : ch->max_tx;
			ch->combined_count = ch->rx_count;
		}
	}
	return r;
}
