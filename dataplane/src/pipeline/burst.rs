//! A burst: classification, connection lookups prefetched and probed ahead, and each frame's handling.

use super::*;

/// A frame's connection key, with its hash, for the burst's lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// No TCP/UDP key (ARP, ICMP, a later fragment, a wire error).
    None,
    /// An IPv4 key.
    V4(Key4, u64),
    /// An IPv6 key.
    V6(Key6, u64),
}

/// How many frames ahead of the one being handled its connection lookup is
/// probed: an IPv6 reply entry's forward entry is prefetched at the probe
/// and read this many frames later (an IPv4 reply entry is enough for a
/// steady reply, see [`crate::conn`]).
pub(super) const PROBE_AHEAD: usize = 4;

/// A frame's classification: the fast one for the common case (unfragmented
/// IPv4 TCP/UDP without options), else the full one.
pub(super) enum Cls {
    /// [`wire::classify_ipv4_l4`] took it.
    Ipv4L4(Ipv4L4),
    /// [`wire::classify_with`]'s result.
    Full(Result<Classified, wire::Error>),
}

/// Scratch space for one burst (allocated once).
pub(super) struct Scratch {
    pub(super) cls: Vec<Cls>,
    /// Each frame's connection key.
    pub(super) lookups: Vec<Lookup>,
    pub(super) closed4: Vec<Closed<Key4>>,
    pub(super) closed6: Vec<Closed<Key6>>,
}

impl Scratch {
    pub(super) fn new(budget: usize) -> Scratch {
        Scratch {
            cls: Vec::with_capacity(BURST),
            lookups: Vec::with_capacity(BURST),
            closed4: Vec::with_capacity(budget.max(4)),
            closed6: Vec::with_capacity(budget.max(4)),
        }
    }
}

impl<F: Frame> Pipeline<F> {
    /// Processes one received burst from `rx_port`, taking every frame out
    /// of `rx`, and appends what to send to `out`.
    pub fn process_burst<A: FrameAlloc<Frame = F>>(
        &mut self,
        now: Time,
        rx_port: u16,
        rx: &mut Vec<F>,
        out: &mut Output<F>,
        alloc: &mut A,
    ) {
        self.now = now;
        let n_rx = rx.len() as u64;
        self.counters.rx_frames += n_rx;
        if usize::from(rx_port) >= self.ports.len() {
            for _ in rx.drain(..) {
                self.counters.count(Fate::Dropped(DropReason::BadPort));
            }
            return;
        }
        // Each frame's connection probe (`PROBE_AHEAD` frames early).
        let mut probes = [Probe::Miss; BURST];
        while !rx.is_empty() {
            let n = rx.len().min(BURST);
            self.classify_burst(&rx[..n]);
            // Out of the scratch space while the frames are handled, so that
            // each classification is read in place rather than copied.
            let cls = core::mem::take(&mut self.scratch.cls);
            // The connection lookups were prefetched by the classification;
            // each is probed `PROBE_AHEAD` frames before its frame is
            // handled, as late as an IPv6 reply's second lookup allows, so
            // that the misses overlap the handling of the frames before it.
            for (i, p) in probes.iter_mut().enumerate().take(n.min(PROBE_AHEAD)) {
                *p = self.probe_frame(i);
            }
            for (i, (mut frame, c)) in rx.drain(..n).zip(&cls).enumerate() {
                if i + PROBE_AHEAD < n
                    && let Some(p) = probes.get_mut(i + PROBE_AHEAD)
                {
                    *p = self.probe_frame(i + PROBE_AHEAD);
                }
                let h = match probes.get(i) {
                    Some(Probe::Hit(h)) => self.hit_ref(i, *h),
                    Some(Probe::Reply(r)) => {
                        // A steady IPv4 reply goes from its own entry.
                        if let Some(f) = self.reply4_cls(i, c) {
                            match self.fast4_reply(frame, &f, r, out) {
                                Ok(fate) => {
                                    self.counters.count(fate);
                                    continue;
                                }
                                Err(back) => frame = back,
                            }
                        }
                        self.finish_frame(i, *r)
                    }
                    _ => None,
                };
                let fate = self.handle(frame, c, h, rx_port, out, alloc);
                self.counters.count(fate);
            }
            self.scratch.cls = cls;
        }
        if !self.reentry.is_empty() {
            self.process_reentry(rx_port, out, alloc);
        }
        self.sync_stats();
    }

    /// Classifies `frames`, and hashes and prefetches the connection
    /// lookup of each TCP/UDP frame (probed later, see `process_burst`).
    pub(super) fn classify_burst(&mut self, frames: &[F]) {
        let s = &mut self.scratch;
        s.cls.clear();
        s.lookups.clear();
        for f in frames {
            let b = f.bytes();
            let mut opts = self.classify_opts;
            match f.rx_ipv4_checksum() {
                RxChecksum::Unknown => {}
                RxChecksum::Good => opts.verify_ipv4_checksum = false,
                RxChecksum::Bad if opts.verify_ipv4_checksum => {
                    s.cls.push(Cls::Full(Err(wire::Error::BadIpv4Checksum)));
                    s.lookups.push(Lookup::None);
                    continue;
                }
                RxChecksum::Bad => {}
            }
            if let Some(c) = wire::classify_ipv4_l4(b, opts) {
                let key = Key4::new(c.src, c.dst, c.src_port, c.dst_port, c.protocol().0);
                s.lookups.push(Lookup::V4(key, self.conn4.prefetch(&key)));
                s.cls.push(Cls::Ipv4L4(c));
                continue;
            }
            let c = wire::classify_with(b, opts);
            let mut lookup = Lookup::None;
            if let Ok(c) = &c
                && (c.protocol == IpProtocol::TCP || c.protocol == IpProtocol::UDP)
                && c.frag != wire::FragStatus::NonFirst
            {
                match (c.src_addr, c.dst_addr) {
                    (IpAddr::V4(s4), IpAddr::V4(d4)) => {
                        let key = Key4::new(s4, d4, c.src_port, c.dst_port, c.protocol.0);
                        lookup = Lookup::V4(key, self.conn4.prefetch(&key));
                    }
                    (IpAddr::V6(s6), IpAddr::V6(d6)) => {
                        let key = Key6::new(s6, d6, c.src_port, c.dst_port, c.protocol.0);
                        lookup = Lookup::V6(key, self.conn6.prefetch(&key));
                    }
                    _ => {}
                }
            }
            s.cls.push(Cls::Full(c));
            s.lookups.push(lookup);
        }
    }

    /// Probes the connection table for frame `i` of the burst.
    #[inline]
    pub(super) fn probe_frame(&mut self, i: usize) -> Probe {
        match self.scratch.lookups.get(i) {
            Some(Lookup::V4(key, h)) => self.conn4.probe(key, *h),
            Some(Lookup::V6(key, h)) => self.conn6.probe(key, *h),
            _ => Probe::Miss,
        }
    }

    /// Frame `i`'s fast classification (`c`), if it is an IPv4 TCP/UDP
    /// packet whose probe found a reply entry in the IPv4 table.
    #[inline(always)]
    pub(super) fn reply4_cls(&self, i: usize, c: &Cls) -> Option<Ipv4L4> {
        if !matches!(self.scratch.lookups.get(i), Some(Lookup::V4(..))) {
            return None;
        }
        match c {
            Cls::Ipv4L4(f) => Some(*f),
            Cls::Full(Ok(c)) => Ipv4L4::of(c),
            Cls::Full(Err(_)) => None,
        }
    }

    /// Frame `i`'s connection, from the reply entry its probe found.
    #[inline]
    pub(super) fn finish_frame(&mut self, i: usize, r: ReplyRef) -> Option<ConnRef> {
        match self.scratch.lookups.get(i)? {
            Lookup::V4(..) => self.conn4.finish(r).map(ConnRef::V4),
            Lookup::V6(..) => self.conn6.finish(r).map(ConnRef::V6),
            Lookup::None => None,
        }
    }

    /// Frame `i`'s connection, from the forward entry its probe found.
    #[inline(always)]
    pub(super) fn hit_ref(&self, i: usize, h: Handle) -> Option<ConnRef> {
        match self.scratch.lookups.get(i)? {
            Lookup::V4(..) => Some(ConnRef::V4(h)),
            Lookup::V6(..) => Some(ConnRef::V6(h)),
            Lookup::None => None,
        }
    }

    /// Decides the fate of one classified frame: the fast path first for a
    /// known connection's unfragmented IPv4 TCP/UDP packet, else the general
    /// path with the full classification (made now if the fast one was used).
    #[inline]
    pub(super) fn handle<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Cls,
        h: Option<ConnRef>,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let c = match c {
            Cls::Ipv4L4(f) => {
                let frame = match &h {
                    Some(ConnRef::V4(h4)) => match self.fast4(frame, f, h4, out) {
                        Ok(fate) => return fate,
                        Err(frame) => frame,
                    },
                    _ => frame,
                };
                return self.handle_classified(frame, &f.classified(), h, rx_port, out, alloc);
            }
            Cls::Full(Ok(c)) => c,
            Cls::Full(Err(e)) => return Fate::Dropped(DropReason::Wire(*e)),
        };
        // IPv4 with options.
        if let (Some(ConnRef::V4(h4)), Some(f)) = (&h, Ipv4L4::of(c)) {
            let frame = match self.fast4(frame, &f, h4, out) {
                Ok(fate) => return fate,
                Err(frame) => frame,
            };
            return self.handle_classified(frame, c, h, rx_port, out, alloc);
        }
        self.handle_classified(frame, c, h, rx_port, out, alloc)
    }

    /// A frame the fast path did not send: its verdict, carried out.
    #[inline]
    pub(super) fn handle_classified<A: FrameAlloc<Frame = F>>(
        &mut self,
        frame: F,
        c: &Classified,
        h: Option<ConnRef>,
        rx_port: u16,
        out: &mut Output<F>,
        alloc: &mut A,
    ) -> Fate {
        let v = self.decide(c, h);
        self.carry_out(frame, c, v, rx_port, out, alloc)
    }
}
