//! Steering programs for software queues: an eBPF program, compiled from
//! the same data [`Pipeline::owner_worker`] steers by, that puts each frame
//! on the receive queue of the worker that owns it before the port sees it.
//!
//! A port without RSS (the lab's veth, bound with `net_af_xdp`) receives a
//! frame on the queue its sender transmitted it on: on a veth the peer's
//! transmit queue is this end's receive queue. The program runs at the
//! sender's transmit hook (`tcx` egress of the bridge's end of the veth),
//! computes the owning worker as the pipeline does and sets the frame's
//! queue; the runtime then hands (almost) nothing between workers.
//!
//! # What it computes
//!
//! For IPv4 and IPv6 frames without VLAN tag:
//!
//! * TCP and UDP (not a later fragment): the service of the destination
//!   (exact port first, then an all-ports service); a NAT service steers by
//!   the client (source address and port); a reply from a NAT server (source
//!   is one, destination not a local or port address) by the client it goes
//!   to (destination); everything else by the port's Toeplitz hash of the
//!   4-tuple (of the addresses for first fragments);
//! * other protocols, later fragments and ICMP/ICMPv6 other than errors and
//!   neighbour discovery: the port's Toeplitz hash of the addresses;
//! * the client hash is the Toeplitz hash of (address, port) under the
//!   pipeline's client steering (`steer::client_owner`).
//!
//! The hash is linear: for every input bit set, the 32-bit key window at
//! that bit is XORed in (three instructions per bit, bits whose window does
//! not reach the bits the redirection table reads are left out).
//!
//! Frames the program does not follow go to queue 0, where the runtime
//! hands them on if another worker owns them: ARP and neighbour discovery
//! (any worker handles those), ICMP errors (the pipeline steers them by the
//! flow they quote), IPv6 packets with extension headers, tagged frames.
//!
//! # Queue selection
//!
//! The program writes `queue + 1` to `skb->queue_mapping`: a forwarded frame
//! (no socket) whose queue mapping is set is sent on queue `mapping - 1`
//! when the device has no XPS map (`skb_tx_hash` reads it as the recorded
//! receive queue). Tested on Linux 6.18 with veths (see
//! `docs/benchmarking-lab.md`).

use super::*;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Signed offset (jumps: instructions to skip; memory: byte offset).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// The instruction as the kernel reads it (host byte order).
    pub fn to_bytes(self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0xf)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

/// Why no steering program could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SteerProgError {
    /// The port does not exist.
    #[error("no port {0}")]
    NoSuchPort(u16),
    /// The queue list does not name one queue per worker.
    #[error("{given} queues for {workers} workers")]
    Queues {
        /// Queues given.
        given: usize,
        /// Workers.
        workers: u16,
    },
    /// A jump too long for an instruction (the program is too big).
    #[error("program too long ({0} instructions)")]
    TooLong(usize),
}

/// A compiled steering program ([`Pipeline::steering_program`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringProgram {
    insns: Vec<Insn>,
}

/// Offset of `queue_mapping` in `struct __sk_buff`.
pub const SKB_QUEUE_MAPPING: i16 = 12;

/// What the program returns: `TCX_NEXT` (the next program, then the
/// default action: the frame goes on).
pub const TCX_NEXT: i32 = -1;

// Opcode parts.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const MOD: u8 = 0x90;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JSET: u8 = 0x40;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const EXIT: u8 = 0x90;

/// A forward or backward jump target.
#[derive(Debug, Clone, Copy)]
struct Label(usize);

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }
    /// r0 = the `size` bytes at `off` of the frame (big-endian).
    fn ld_abs(&mut self, size: u8, off: i32) {
        self.raw(LD | size | ABS, 0, 0, 0, off);
    }
    /// r0 = the `size` bytes at `reg + off` of the frame.
    fn ld_ind(&mut self, size: u8, reg: u8, off: i32) {
        self.raw(LD | size | IND, 0, reg, 0, off);
    }
    fn alu(&mut self, op: u8, dst: u8, imm: i32) {
        self.raw(ALU | op | K, dst, 0, 0, imm);
    }
    fn mov(&mut self, dst: u8, src: u8) {
        self.raw(ALU | MOV | X, dst, src, 0, 0);
    }
    /// Stack slot `slot` (a 32-bit word below the frame pointer) = `src`.
    fn store(&mut self, slot: i16, src: u8) {
        self.raw(STX | MEM | W, 10, src, -4 * slot, 0);
    }
    fn load(&mut self, dst: u8, slot: i16) {
        self.raw(LDX | MEM | W, dst, 10, -4 * slot, 0);
    }
    fn jmp(&mut self, op: u8, reg: u8, imm: u32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(JMP32 | op | K, reg, 0, 0, imm as i32);
    }
    fn ja(&mut self, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(JMP | JA, 0, 0, 0, 0);
    }
    fn finish(mut self) -> Result<Vec<Insn>, SteerProgError> {
        let n = self.insns.len();
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].expect("every label is bound");
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| SteerProgError::TooLong(n))?;
        }
        Ok(reachable_only(self.insns))
    }
}

/// The instructions reachable from the first, jumps adjusted: the kernel
/// refuses a program with unreachable instructions (sections no frame of
/// this profile can reach, such as the client hash of a family without NAT).
fn reachable_only(insns: Vec<Insn>) -> Vec<Insn> {
    let n = insns.len();
    let target = |i: usize, ins: &Insn| (i as i64 + 1 + i64::from(ins.off)) as usize;
    let mut seen = vec![false; n];
    let mut todo = vec![0usize];
    while let Some(i) = todo.pop() {
        if i >= n || seen[i] {
            continue;
        }
        seen[i] = true;
        let ins = &insns[i];
        let class = ins.code & 7;
        let op = ins.code & 0xf0;
        if class == JMP || class == JMP32 {
            if op == EXIT {
                continue;
            }
            todo.push(target(i, ins));
            if op == JA && class == JMP {
                continue;
            }
        }
        todo.push(i + 1);
    }
    // New index of every old instruction (of the next kept one if dropped).
    let mut new_at = vec![0usize; n + 1];
    let mut k = 0;
    for i in 0..n {
        new_at[i] = k;
        k += usize::from(seen[i]);
    }
    new_at[n] = k;
    insns
        .iter()
        .enumerate()
        .filter(|(i, _)| seen[*i])
        .map(|(i, ins)| {
            let mut ins = *ins;
            let class = ins.code & 7;
            if (class == JMP || class == JMP32) && ins.code & 0xf0 != EXIT {
                let t = new_at[target(i, &ins)] as i64;
                ins.off = (t - new_at[i] as i64 - 1) as i16;
            }
            ins
        })
        .collect()
}

// Registers: r6 the context (the packet loads need it there), r7 the hash
// (or, before it, the first-fragment flag), r8 the IP protocol, r9 the IPv4
// header length; r0-r5 are clobbered by packet loads.
const CTX: u8 = 6;
const HASH: u8 = 7;
const PROTO: u8 = 8;
const IHL: u8 = 9;

/// Stack slots (32-bit words): the IPv4 source, destination and ports, or
/// the IPv6 source (4 words), destination (4) and ports.
const V4_SRC: i16 = 1;
const V4_DST: i16 = 2;
const V6_SRC: i16 = 1;
const V6_DST: i16 = 5;
const PORTS: i16 = 9;

/// A hash section: its label, the frame words it hashes ((size | IND,
/// offset), in input order), the steering whose key it hashes with, and
/// where it goes next.
type Section<'a> = (Label, Vec<(u8, i32)>, &'a Steer, Label);

/// The data a program is compiled from.
struct Spec<'a> {
    route: &'a Steer,
    client: &'a Steer,
    queues: &'a [u16],
    /// (VIP, IP protocol, port or all ports, NAT).
    services: Vec<(IpAddr, u8, Option<u16>, bool)>,
    /// Full-NAT local addresses and port addresses: replies to them are
    /// not NAT replies.
    ours: Vec<IpAddr>,
    /// NAT servers (address, IP protocol, port or 0 for any).
    nat_servers: Vec<(IpAddr, u8, u16)>,
}

impl<F: Frame> Pipeline<F> {
    /// The steering program of `port` for a sender on the other side of
    /// its link (see the [module documentation](self)); `queue_of_worker[w]`
    /// is the receive queue worker `w` polls on this port. Compiled from
    /// the current services, addresses and steering: compile again after
    /// they change.
    pub fn steering_program(
        &self,
        port: u16,
        queue_of_worker: &[u16],
    ) -> Result<SteeringProgram, SteerProgError> {
        let p = self
            .ports
            .get(usize::from(port))
            .ok_or(SteerProgError::NoSuchPort(port))?;
        if queue_of_worker.len() != usize::from(self.worker.n_workers) {
            return Err(SteerProgError::Queues {
                given: queue_of_worker.len(),
                workers: self.worker.n_workers,
            });
        }
        let services = self
            .services
            .services()
            .map(|(i, s)| {
                let nat = self
                    .svcs
                    .get(usize::from(i.0))
                    .is_some_and(|r| r.xmit == Xmit::Nat);
                (s.vip, s.protocol.ip_proto(), s.port, nat)
            })
            .collect();
        let mut ours: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|(_, a)| a.snat || a.port.is_some())
            .map(|(ip, _)| *ip)
            .collect();
        ours.sort();
        let mut nat_servers: Vec<_> = self.nat_servers.iter().copied().collect();
        nat_servers.sort();
        let spec = Spec {
            route: &p.steer,
            client: &self.client_steer,
            queues: queue_of_worker,
            services,
            ours,
            nat_servers,
        };
        Ok(SteeringProgram {
            insns: spec.compile()?,
        })
    }
}

/// The 32-bit window of the key at input bit `bit` (the hash of an input
/// with only that bit set).
fn window(t: &Toeplitz, bit: usize) -> u32 {
    let mut input = [0u8; crate::rss::MAX_INPUT_LEN];
    input[bit / 8] = 0x80 >> (bit % 8);
    crate::rss::toeplitz_hash(t.key(), &input)
}

/// How a hash becomes a worker: `Some((mask, n))` when the table is
/// round-robin over `n` workers and a power of two long (worker = hash &
/// mask % n), else `None` (entry by entry).
fn reta_shape(r: &Reta) -> Option<(u32, u32)> {
    let n = u32::from(r.queue_count());
    let len = r.size();
    let rr = r
        .entries()
        .iter()
        .enumerate()
        .all(|(i, &q)| u32::from(q) == i as u32 % n);
    (rr && len.is_power_of_two()).then_some(((len - 1) as u32, n))
}

/// The hash bits the table reads.
fn needed_bits(r: &Reta) -> u32 {
    match reta_shape(r) {
        Some((mask, n)) if n.is_power_of_two() => mask & (n - 1),
        Some((mask, _)) => mask,
        None if r.size().is_power_of_two() => (r.size() - 1) as u32,
        None => u32::MAX,
    }
}

impl Spec<'_> {
    fn compile(&self) -> Result<Vec<Insn>, SteerProgError> {
        let mut a = Asm::default();
        let q0 = a.label();
        let v4 = a.label();
        let v6 = a.label();
        // Route (4-tuple or addresses) and client (source or destination) hashes.
        let [r4l4, r4l3, c4s, c4d, r6l4, r6l3, c6s, c6d] = [(); 8].map(|()| a.label());
        let route4 = a.label();

        a.raw(ALU64 | MOV | X, CTX, 1, 0, 0);
        a.ld_abs(H, 12);
        a.jmp(JEQ, 0, 0x0800, v4);
        a.jmp(JEQ, 0, 0x86dd, v6);
        a.ja(q0);

        // IPv4.
        a.bind(v4);
        a.ld_abs(B, 14);
        a.mov(1, 0);
        a.alu(AND, 1, 0xf0);
        a.jmp(JNE, 1, 0x40, q0);
        a.alu(AND, 0, 0x0f);
        a.alu(LSH, 0, 2);
        a.mov(IHL, 0);
        a.jmp(JLT, IHL, 20, q0);
        a.ld_abs(B, 23);
        a.mov(PROTO, 0);
        a.ld_abs(H, 20);
        a.mov(1, 0);
        a.alu(AND, 1, 0x1fff);
        a.jmp(JNE, 1, 0, r4l3); // a later fragment: addresses only
        a.alu(AND, 0, 0x2000);
        a.mov(HASH, 0); // first fragment: no ports in the route hash
        let l4 = a.label();
        let icmp = a.label();
        a.jmp(JEQ, PROTO, 6, l4);
        a.jmp(JEQ, PROTO, 17, l4);
        a.jmp(JEQ, PROTO, 1, icmp);
        a.ja(r4l3);
        a.bind(icmp);
        a.ld_ind(B, IHL, 14);
        for t in [3, 4, 5, 11, 12] {
            a.jmp(JEQ, 0, t, q0); // errors: steered by the quoted flow
        }
        a.ja(r4l3);
        a.bind(l4);
        a.ld_abs(W, 26);
        a.store(V4_SRC, 0);
        a.ld_abs(W, 30);
        a.store(V4_DST, 0);
        a.ld_ind(W, IHL, 14);
        a.store(PORTS, 0);
        self.decide(&mut a, false, route4, c4s, c4d);
        a.bind(route4);
        a.jmp(JNE, HASH, 0, r4l3);
        a.ja(r4l4);

        // IPv6.
        a.bind(v6);
        a.ld_abs(B, 14);
        a.alu(AND, 0, 0xf0);
        a.jmp(JNE, 0, 0x60, q0);
        a.ld_abs(B, 20);
        a.mov(PROTO, 0);
        let l4 = a.label();
        let icmp = a.label();
        a.jmp(JEQ, PROTO, 6, l4);
        a.jmp(JEQ, PROTO, 17, l4);
        a.jmp(JEQ, PROTO, 58, icmp);
        for nh in [0, 43, 44, 51, 60] {
            a.jmp(JEQ, PROTO, nh, q0); // extension headers: not followed
        }
        a.ja(r6l3);
        a.bind(icmp);
        a.ld_abs(B, 54);
        a.jmp(JLT, 0, 128, q0); // errors
        a.jmp(JLT, 0, 133, r6l3);
        a.jmp(JGT, 0, 137, r6l3);
        a.ja(q0); // neighbour discovery: any worker
        a.bind(l4);
        for i in 0..4 {
            a.ld_abs(W, 22 + 4 * i);
            a.store(V6_SRC + i as i16, 0);
            a.ld_abs(W, 38 + 4 * i);
            a.store(V6_DST + i as i16, 0);
        }
        a.ld_abs(W, 54);
        a.store(PORTS, 0);
        self.decide(&mut a, true, r6l4, c6s, c6d);

        // The hashes, then the table and the worker's queue.
        let (route, client) = (self.route, self.client);
        let reta = a.label();
        // Route and client steering share the table when they have the
        // same one (the software steering of a port).
        let same = route.reta.entries() == client.reta.entries();
        let creta = if same { reta } else { a.label() };
        const V6_ADDRS: [i32; 8] = [22, 26, 30, 34, 38, 42, 46, 50];
        let mut r6_4 = V6_ADDRS.map(|o| (W, o)).to_vec();
        r6_4.push((W, 54));
        let sections: [Section<'_>; 8] = [
            (r4l4, vec![(W, 26), (W, 30), (IND | W, 14)], route, reta),
            (r4l3, vec![(W, 26), (W, 30)], route, reta),
            (c4s, vec![(W, 26), (IND | H, 14)], client, creta),
            (c4d, vec![(W, 30), (IND | H, 16)], client, creta),
            (r6l4, r6_4, route, reta),
            (r6l3, V6_ADDRS.map(|o| (W, o)).to_vec(), route, reta),
            (
                c6s,
                vec![(W, 22), (W, 26), (W, 30), (W, 34), (H, 54)],
                client,
                creta,
            ),
            (
                c6d,
                vec![(W, 38), (W, 42), (W, 46), (W, 50), (H, 56)],
                client,
                creta,
            ),
        ];
        for (at, loads, steer, then) in &sections {
            a.bind(*at);
            hash(&mut a, loads, steer);
            a.ja(*then);
        }
        a.bind(reta);
        self.worker_queue(&mut a, &route.reta, q0);
        if !same {
            a.bind(creta);
            self.worker_queue(&mut a, &client.reta, q0);
        }
        a.bind(q0);
        set_queue(&mut a, 0);
        a.finish()
    }

    /// The decision of a TCP or UDP frame whose source, destination and
    /// ports are in the stack slots: jumps to `route`, to `csrc` (a NAT
    /// client's frame) or to `cdst` (a NAT server's reply).
    fn decide(&self, a: &mut Asm, v6: bool, route: Label, csrc: Label, cdst: Label) {
        // r1: an address word, r4 the destination port, r5 the source port.
        a.load(4, PORTS);
        a.mov(5, 4);
        a.alu(AND, 4, 0xffff);
        a.alu(RSH, 5, 16);
        let (src, dst) = if v6 {
            (V6_SRC, V6_DST)
        } else {
            (V4_SRC, V4_DST)
        };
        // Jumps to `to` if the address in `slot` is `addr`, else falls through.
        let is_addr = |a: &mut Asm, slot: i16, addr: &IpAddr, miss: Label| {
            let words: Vec<u32> = match addr {
                IpAddr::V4(x) => vec![u32::from(*x)],
                IpAddr::V6(x) => x
                    .octets()
                    .chunks(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            };
            for (i, w) in words.iter().enumerate() {
                a.load(1, slot + i as i16);
                a.jmp(JNE, 1, *w, miss);
            }
        };
        let fam = |ip: &IpAddr| ip.is_ipv6() == v6;
        // Exact ports first, then all-ports services.
        for exact in [true, false] {
            for (vip, proto, port, nat) in self.services.iter().filter(|s| fam(&s.0)) {
                if port.is_some() != exact {
                    continue;
                }
                let miss = a.label();
                let to = if *nat { csrc } else { route };
                is_addr(a, dst, vip, miss);
                match port {
                    Some(p) => {
                        a.jmp(JNE, PROTO, u32::from(*proto), miss);
                        a.jmp(JEQ, 4, u32::from(*p), to);
                    }
                    None => a.jmp(JEQ, PROTO, u32::from(*proto), to),
                }
                a.bind(miss);
            }
        }
        for ip in self.ours.iter().filter(|ip| fam(ip)) {
            let miss = a.label();
            is_addr(a, dst, ip, miss);
            a.ja(route);
            a.bind(miss);
        }
        for (ip, proto, port) in self.nat_servers.iter().filter(|s| fam(&s.0)) {
            let miss = a.label();
            is_addr(a, src, ip, miss);
            if *port == 0 {
                a.jmp(JEQ, PROTO, u32::from(*proto), cdst);
            } else {
                a.jmp(JNE, PROTO, u32::from(*proto), miss);
                a.jmp(JEQ, 5, u32::from(*port), cdst);
            }
            a.bind(miss);
        }
        a.ja(route);
    }

    /// The worker the hash in r7 names in `reta`, and its queue.
    fn worker_queue(&self, a: &mut Asm, reta: &Reta, q0: Label) {
        let workers: Vec<Label> = self.queues.iter().map(|_| a.label()).collect();
        a.mov(1, HASH);
        match reta_shape(reta) {
            Some((mask, n)) => {
                a.alu(AND, 1, mask as i32);
                if n > 1 {
                    a.alu(MOD, 1, n as i32);
                }
                for (w, l) in workers.iter().enumerate() {
                    a.jmp(JEQ, 1, w as u32, *l);
                }
            }
            None => {
                let len = reta.size() as u32;
                if len.is_power_of_two() {
                    a.alu(AND, 1, (len - 1) as i32);
                } else {
                    a.alu(MOD, 1, len as i32);
                }
                for (i, &w) in reta.entries().iter().enumerate() {
                    if let Some(l) = workers.get(usize::from(w)) {
                        a.jmp(JEQ, 1, i as u32, *l);
                    }
                }
            }
        }
        a.ja(q0);
        for (l, &q) in workers.iter().zip(self.queues) {
            a.bind(*l);
            set_queue(a, q);
        }
    }
}

/// Hashes the frame words `loads` ((size | IND, offset), in input order)
/// into r7 under `steer`'s key, leaving out the bits its table never reads.
fn hash(a: &mut Asm, loads: &[(u8, i32)], steer: &Steer) {
    let mask = needed_bits(&steer.reta);
    a.alu(MOV, HASH, 0);
    let mut bit = 0;
    for &(kind, off) in loads {
        let size = kind & 0x18;
        if kind & IND != 0 {
            a.ld_ind(size, IHL, off);
        } else {
            a.ld_abs(size, off);
        }
        let nbits = if size == H { 16 } else { 32 };
        if size == H {
            a.alu(LSH, 0, 16);
        }
        for t in 0..nbits {
            let w = window(&steer.toeplitz, bit + t) & mask;
            if w != 0 {
                a.raw(JMP32 | JSET | K, 0, 0, 1, (1u32 << (31 - t)) as i32);
                a.raw(JMP | JA, 0, 0, 1, 0);
                a.alu(XOR, HASH, w as i32);
            }
        }
        bit += nbits;
    }
}

/// Sets the frame's queue to `queue` and ends the program.
fn set_queue(a: &mut Asm, queue: u16) {
    a.alu(MOV, 2, i32::from(queue) + 1);
    a.raw(STX | MEM | W, CTX, 2, SKB_QUEUE_MAPPING, 0);
    a.raw(ALU64 | MOV | K, 0, 0, 0, TCX_NEXT);
    a.raw(JMP | EXIT, 0, 0, 0, 0);
}

impl SteeringProgram {
    /// The instructions.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The program as `BPF_PROG_LOAD` takes it.
    pub fn bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    /// Runs the program over `frame` as the kernel would (the instructions
    /// this compiler emits only): the queue it sets, or `None` if it ends
    /// without setting one (a load past the end of the frame).
    pub fn run(&self, frame: &[u8]) -> Option<u16> {
        let mut r = [0u64; 11];
        let mut stack = [0u8; 64];
        let mut pc = 0usize;
        let load = |off: i64, size: u8| -> Option<u64> {
            let n = match size {
                B => 1,
                H => 2,
                _ => 4,
            };
            let at = usize::try_from(off).ok()?;
            let b = frame.get(at..at.checked_add(n)?)?;
            Some(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
        };
        for _ in 0..100_000 {
            let i = *self.insns.get(pc)?;
            pc += 1;
            let (class, size, mode) = (i.code & 7, i.code & 0x18, i.code & 0xe0);
            let op = i.code & 0xf0;
            let srcv = |r: &[u64; 11]| {
                if i.code & X != 0 {
                    r[usize::from(i.src)]
                } else {
                    i64::from(i.imm) as u64
                }
            };
            match class {
                LD => {
                    let base = if mode == IND {
                        r[usize::from(i.src)] as i64
                    } else {
                        0
                    };
                    r[0] = load(base + i64::from(i.imm), size)?;
                }
                LDX => {
                    assert_eq!(i.src, 10, "stack loads only");
                    let at = (64 + i64::from(i.off)) as usize;
                    r[usize::from(i.dst)] =
                        u64::from(u32::from_ne_bytes(stack[at..at + 4].try_into().ok()?));
                }
                STX => {
                    let v = r[usize::from(i.src)] as u32;
                    if i.dst == CTX {
                        assert_eq!(i.off, SKB_QUEUE_MAPPING, "only queue_mapping is written");
                        return u16::try_from(v).ok()?.checked_sub(1);
                    }
                    assert_eq!(i.dst, 10, "stack stores only");
                    let at = (64 + i64::from(i.off)) as usize;
                    stack[at..at + 4].copy_from_slice(&v.to_ne_bytes());
                }
                ALU | ALU64 => {
                    let d = usize::from(i.dst);
                    let s = srcv(&r);
                    let v = match op {
                        AND => r[d] & s,
                        LSH => r[d] << (s & 63),
                        RSH => {
                            (r[d] & if class == ALU { 0xffff_ffff } else { u64::MAX }) >> (s & 63)
                        }
                        MOD => (r[d] & 0xffff_ffff) % (s & 0xffff_ffff).max(1),
                        XOR => r[d] ^ s,
                        MOV => s,
                        _ => panic!("unexpected ALU op {op:#x}"),
                    };
                    r[d] = if class == ALU { v & 0xffff_ffff } else { v };
                }
                JMP | JMP32 => {
                    if op == EXIT {
                        return None;
                    }
                    let d = r[usize::from(i.dst)] & 0xffff_ffff;
                    let s = srcv(&r) & 0xffff_ffff;
                    let taken = match op {
                        JA => true,
                        JEQ => d == s,
                        JNE => d != s,
                        JGT => d > s,
                        JLT => d < s,
                        JSET => d & s != 0,
                        _ => panic!("unexpected jump {op:#x}"),
                    };
                    if taken {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                _ => panic!("unexpected class {class}"),
            }
        }
        None
    }
}
