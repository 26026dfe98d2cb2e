//! Ethernet ports: lookup, configuration (queues, RSS, MTU, promiscuous),
//! start/stop, link and statistics, and the per-queue burst handles.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;

use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::sys;

/// RSS hash types (`RTE_ETH_RSS_*`), which header fields the NIC hashes.
pub mod rss_hf {
    /// IPv4 addresses.
    pub const IPV4: u64 = 1 << 2;
    /// Fragmented IPv4.
    pub const FRAG_IPV4: u64 = 1 << 3;
    /// IPv4 TCP (addresses and ports).
    pub const NONFRAG_IPV4_TCP: u64 = 1 << 4;
    /// IPv4 UDP (addresses and ports).
    pub const NONFRAG_IPV4_UDP: u64 = 1 << 5;
    /// Other IPv4.
    pub const NONFRAG_IPV4_OTHER: u64 = 1 << 7;
    /// IPv6 addresses.
    pub const IPV6: u64 = 1 << 8;
    /// Fragmented IPv6.
    pub const FRAG_IPV6: u64 = 1 << 9;
    /// IPv6 TCP.
    pub const NONFRAG_IPV6_TCP: u64 = 1 << 10;
    /// IPv6 UDP.
    pub const NONFRAG_IPV6_UDP: u64 = 1 << 11;
    /// Other IPv6.
    pub const NONFRAG_IPV6_OTHER: u64 = 1 << 13;
    /// IPv6 with extension headers.
    pub const IPV6_EX: u64 = 1 << 15;
    /// IPv6 TCP with extension headers.
    pub const IPV6_TCP_EX: u64 = 1 << 16;
    /// IPv6 UDP with extension headers.
    pub const IPV6_UDP_EX: u64 = 1 << 17;
    /// `RTE_ETH_RSS_IP`.
    pub const IP: u64 =
        IPV4 | FRAG_IPV4 | NONFRAG_IPV4_OTHER | IPV6 | FRAG_IPV6 | NONFRAG_IPV6_OTHER | IPV6_EX;
    /// `RTE_ETH_RSS_TCP`.
    pub const TCP: u64 = NONFRAG_IPV4_TCP | NONFRAG_IPV6_TCP | IPV6_TCP_EX;
    /// `RTE_ETH_RSS_UDP`.
    pub const UDP: u64 = NONFRAG_IPV4_UDP | NONFRAG_IPV6_UDP | IPV6_UDP_EX;
}

/// Receive-side scaling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    /// The Toeplitz key; `None` keeps the driver's default key.
    pub key: Option<Vec<u8>>,
    /// Hash types ([`rss_hf`]); masked with what the device supports.
    pub hash_types: u64,
}

impl Default for RssConfig {
    fn default() -> Self {
        RssConfig {
            key: None,
            hash_types: rss_hf::IP | rss_hf::TCP | rss_hf::UDP,
        }
    }
}

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues (one worker each).
    pub rx_queues: u16,
    /// Transmit queues.
    pub tx_queues: u16,
    /// Receive descriptors per queue.
    pub rx_desc: u16,
    /// Transmit descriptors per queue.
    pub tx_desc: u16,
    /// MTU to set, `None` to keep the device's.
    pub mtu: Option<u16>,
    /// Receive every frame, whatever its destination MAC.
    pub promiscuous: bool,
    /// RSS, used when there is more than one receive queue.
    pub rss: RssConfig,
    /// Have the NIC check IPv4 header checksums on receive, if it can
    /// ([`RX_OFFLOAD_IPV4_CKSUM`]); its verdict is in each mbuf's flags.
    pub rx_ipv4_checksum: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            promiscuous: true,
            rss: RssConfig::default(),
            rx_ipv4_checksum: true,
        }
    }
}

/// What a device can do (`rte_eth_dev_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name, e.g. `net_af_packet`.
    pub driver: String,
    /// Most receive queues.
    pub max_rx_queues: u16,
    /// Most transmit queues.
    pub max_tx_queues: u16,
    /// RSS redirection table size (0 when RSS is not supported).
    pub reta_size: u16,
    /// RSS key size in bytes (0 when unknown).
    pub hash_key_size: u8,
    /// Supported RSS hash types.
    pub rss_hash_types: u64,
    /// Smallest MTU.
    pub min_mtu: u16,
    /// Largest MTU.
    pub max_mtu: u16,
    /// Supported transmit offloads (`RTE_ETH_TX_OFFLOAD_*`).
    pub tx_offloads: u64,
    /// Supported receive offloads (`RTE_ETH_RX_OFFLOAD_*`).
    pub rx_offloads: u64,
}

/// Receive offload: the NIC checks IPv4 header checksums
/// (`RTE_ETH_RX_OFFLOAD_IPV4_CKSUM`, a function-like macro bindgen skips).
pub const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;

impl PortInfo {
    /// Whether the device can check IPv4 header checksums on receive
    /// ([`RX_OFFLOAD_IPV4_CKSUM`]).
    pub fn offers_rx_ipv4_checksum(&self) -> bool {
        self.rx_offloads & RX_OFFLOAD_IPV4_CKSUM != 0
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the device because the receive queues were full.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive allocation failures (the mempool ran dry).
    pub rx_nombuf: u64,
}

/// An Ethernet port. A cheap copyable id; queue access goes through
/// [`RxQueue`]/[`TxQueue`] handles, each owned by one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    id: u16,
}

impl Port {
    /// The port with DPDK name `name` (`net_ring0`, `0000:03:00.0`, ...).
    pub fn by_name(_eal: Eal, name: &str) -> Result<Port> {
        let op = format!("rte_eth_dev_get_port_by_name({name})");
        let c = CString::new(name)
            .map_err(|_| Error::invalid(op.clone(), "name contains a NUL byte"))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc < 0 {
            return Err(Error::from_errno(op, rc));
        }
        Ok(Port { id })
    }

    /// Finds the port for a devargs string, probing the device first if no
    /// port of that name exists yet (virtual devices are created this way).
    pub fn open(eal: Eal, devargs: &str) -> Result<Port> {
        let name = devargs.split(',').next().unwrap_or("").trim();
        if name.is_empty() {
            return Err(Error::invalid("port", "empty device string"));
        }
        if let Ok(p) = Port::by_name(eal, name) {
            return Ok(p);
        }
        eal.probe_device(devargs)?;
        Port::by_name(eal, name)
    }

    /// Every port EAL knows.
    pub fn all(_eal: Eal) -> Vec<Port> {
        let mut out = Vec::new();
        // SAFETY: iterating port ids only reads ethdev state.
        let mut id = unsafe { sys::rte_eth_find_next_owned_by(0, 0) };
        while id < sys::RTE_MAX_ETHPORTS as u64 {
            out.push(Port { id: id as u16 });
            // SAFETY: as above.
            id = unsafe { sys::rte_eth_find_next_owned_by(id as u16 + 1, 0) };
        }
        out
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name.
    pub fn name(&self) -> Result<String> {
        let mut buf = [0 as std::ffi::c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf is large enough per the API contract.
        let rc = unsafe { sys::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_get_name_by_port({})", self.id),
                rc,
            ));
        }
        // SAFETY: NUL-terminated by DPDK.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    /// What the device can do.
    pub fn info(&self) -> Result<PortInfo> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_info_get(self.id, &mut info) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_info_get(port {})", self.id),
                rc,
            ));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: static driver name string.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            reta_size: info.reta_size,
            hash_key_size: info.hash_key_size,
            rss_hash_types: info.flow_type_rss_offloads,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            tx_offloads: info.tx_offload_capa,
            rx_offloads: info.rx_offload_capa,
        })
    }

    /// Configures queues, RSS, MTU and promiscuous mode, sets the queues up
    /// (receive queue `i` takes buffers from `pools[i % pools.len()]`) and
    /// returns the queue handles. The port is left stopped: call [`Port::start`].
    pub fn configure(
        &self,
        cfg: &PortConfig,
        pools: &[Mempool],
    ) -> Result<(Vec<RxQueue>, Vec<TxQueue>)> {
        let op = |what: &str| format!("{what}(port {})", self.id);
        if pools.is_empty() {
            return Err(Error::invalid(
                op("configure"),
                "at least one mempool is needed",
            ));
        }
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(Error::invalid(
                op("configure"),
                "a port needs at least one rx and one tx queue",
            ));
        }
        let info = self.info()?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::invalid(
                op("configure"),
                format!(
                    "{} supports at most {} rx / {} tx queues, {} / {} requested",
                    info.driver,
                    info.max_rx_queues,
                    info.max_tx_queues,
                    cfg.rx_queues,
                    cfg.tx_queues
                ),
            ));
        }
        let mut conf = sys::rte_eth_conf::default();
        let mut key = cfg.rss.key.clone();
        if cfg.rx_queues > 1 && info.rss_hash_types != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = cfg.rss.hash_types & info.rss_hash_types;
            if let Some(k) = key.as_mut() {
                if info.hash_key_size != 0 && k.len() != info.hash_key_size as usize {
                    return Err(Error::invalid(
                        op("configure"),
                        format!(
                            "{} wants a {} byte RSS key, {} given",
                            info.driver,
                            info.hash_key_size,
                            k.len()
                        ),
                    ));
                }
                conf.rx_adv_conf.rss_conf.rss_key = k.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = k.len() as u8;
            }
        }
        if cfg.rx_ipv4_checksum && info.offers_rx_ipv4_checksum() {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_CKSUM;
        }
        // SAFETY: conf (and the key it points to) outlives the call.
        let rc =
            unsafe { sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if rc < 0 {
            return Err(Error::from_errno(op("rte_eth_dev_configure"), rc));
        }
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out-pointers.
        let rc =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc) };
        if rc < 0 {
            return Err(Error::from_errno(
                op("rte_eth_dev_adjust_nb_rx_tx_desc"),
                rc,
            ));
        }
        // SAFETY: port id valid (configure succeeded).
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        let mut rxq = Vec::with_capacity(cfg.rx_queues as usize);
        for q in 0..cfg.rx_queues {
            let pool = pools[q as usize % pools.len()];
            // SAFETY: null rx_conf means the driver default; the pool outlives the port.
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc < 0 {
                return Err(Error::from_errno(
                    format!("rte_eth_rx_queue_setup(port {}, queue {q})", self.id),
                    rc,
                ));
            }
            rxq.push(RxQueue {
                port: self.id,
                queue: q,
                _not_sync: PhantomData,
            });
        }
        let mut txq = Vec::with_capacity(cfg.tx_queues as usize);
        for q in 0..cfg.tx_queues {
            // SAFETY: null tx_conf means the driver default.
            let rc = unsafe {
                sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket, std::ptr::null())
            };
            if rc < 0 {
                return Err(Error::from_errno(
                    format!("rte_eth_tx_queue_setup(port {}, queue {q})", self.id),
                    rc,
                ));
            }
            txq.push(TxQueue {
                port: self.id,
                queue: q,
                _not_sync: PhantomData,
            });
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: plain call.
            let rc = unsafe { sys::rte_eth_dev_set_mtu(self.id, mtu) };
            if rc < 0 && rc != -libc::ENOTSUP {
                return Err(Error::from_errno(
                    format!("rte_eth_dev_set_mtu(port {}, {mtu})", self.id),
                    rc,
                ));
            }
        }
        if cfg.promiscuous {
            // SAFETY: plain call. Some virtual devices cannot change it; that is not fatal.
            let rc = unsafe { sys::rte_eth_promiscuous_enable(self.id) };
            if rc < 0 && rc != -libc::ENOTSUP {
                return Err(Error::from_errno(op("rte_eth_promiscuous_enable"), rc));
            }
        }
        Ok((rxq, txq))
    }

    /// Starts the port.
    pub fn start(&self) -> Result<()> {
        // SAFETY: plain call.
        let rc = unsafe { sys::rte_eth_dev_start(self.id) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_start(port {})", self.id),
                rc,
            ));
        }
        Ok(())
    }

    /// Stops the port (queues must no longer be polled).
    pub fn stop(&self) -> Result<()> {
        // SAFETY: plain call.
        let rc = unsafe { sys::rte_eth_dev_stop(self.id) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_stop(port {})", self.id),
                rc,
            ));
        }
        Ok(())
    }

    /// Closes the port, releasing its queues (it must be stopped).
    pub fn close(&self) -> Result<()> {
        // SAFETY: plain call.
        let rc = unsafe { sys::rte_eth_dev_close(self.id) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_close(port {})", self.id),
                rc,
            ));
        }
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.id, &mut a) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_macaddr_get(port {})", self.id),
                rc,
            ));
        }
        Ok(a.addr_bytes)
    }

    /// Sets the port's MAC address (before or after start).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<()> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid pointer to an address.
        let rc = unsafe { sys::rte_eth_dev_default_mac_addr_set(self.id, &mut a) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_default_mac_addr_set(port {})", self.id),
                rc,
            ));
        }
        Ok(())
    }

    /// Current link state, without waiting.
    pub fn link(&self) -> Result<Link> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_link_get_nowait(port {})", self.id),
                rc,
            ));
        }
        Ok(Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    /// The port's counters.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid out-pointer.
        let rc = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_stats_get(port {})", self.id),
                rc,
            ));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// The RSS key in use, if the device reports one.
    pub fn rss_key(&self) -> Result<Option<Vec<u8>>> {
        let info = self.info()?;
        if info.hash_key_size == 0 {
            return Ok(None);
        }
        let mut key = vec![0u8; info.hash_key_size as usize];
        let mut conf = sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: info.hash_key_size,
            ..Default::default()
        };
        // SAFETY: conf points at a buffer of rss_key_len bytes.
        let rc = unsafe { sys::rte_eth_dev_rss_hash_conf_get(self.id, &mut conf) };
        if rc == -libc::ENOTSUP {
            return Ok(None);
        }
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eth_dev_rss_hash_conf_get(port {})", self.id),
                rc,
            ));
        }
        Ok(Some(key))
    }
}

/// A receive queue. Owned by exactly one thread (it is `Send`, not `Sync`).
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl RxQueue {
    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets, appending them to `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: u16) -> usize {
        out.reserve(max as usize);
        let spare = out.spare_capacity_mut();
        let n = (max as usize).min(spare.len()) as u16;
        // SAFETY: Mbuf is a transparent non-null mbuf pointer; the driver writes
        // `got` valid, owned mbuf pointers into the spare capacity.
        let got = unsafe {
            sys::tack_rte_eth_rx_burst(
                self.port,
                self.queue,
                spare.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                n,
            )
        };
        // SAFETY: the first `got` slots were initialised above.
        unsafe { out.set_len(out.len() + got as usize) };
        got as usize
    }
}

/// A transmit queue. Owned by exactly one thread.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl TxQueue {
    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// An empty transmit burst: drivers that free sent mbufs only when
    /// they are next called (`net_af_xdp` reads its completion ring then)
    /// give back what the device has finished with. For when nothing more
    /// will be sent (the queue's owner stops).
    pub fn reclaim(&mut self) {
        let mut none: [*mut sys::rte_mbuf; 1] = [std::ptr::null_mut()];
        // SAFETY: a burst of zero packets reads no entry of the array.
        unsafe { sys::tack_rte_eth_tx_burst(self.port, self.queue, none.as_mut_ptr(), 0) };
    }

    /// Sends packets from the front of `pkts`; those sent are removed, those
    /// the device could not take stay (retry or drop them). Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let len = pkts.len();
        if len == 0 {
            return 0;
        }
        let n = len.min(u16::MAX as usize) as u16;
        // SAFETY: pkts holds `n` owned mbuf pointers; the driver takes ownership of the first `sent`.
        let sent = unsafe {
            sys::tack_rte_eth_tx_burst(
                self.port,
                self.queue,
                pkts.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                n,
            )
        } as usize;
        // SAFETY: the first `sent` entries now belong to the driver: forget them by
        // moving the rest to the front without dropping.
        unsafe {
            let p = pkts.as_mut_ptr();
            std::ptr::copy(p.add(sent), p, len - sent);
            pkts.set_len(len - sent);
        }
        sent
    }
}
