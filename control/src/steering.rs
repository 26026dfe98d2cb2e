//! Steering programs for ports without RSS: the eBPF program
//! ([`Pipeline::steering_program`]) that sets, on the other end of a
//! multi-queue veth, the queue each frame is sent on, so that it arrives on
//! the receive queue of the worker that owns it; and attaching it (`tcx`
//! egress, Linux 6.6 and later) without libbpf or a compiler.
//!
//! `tack steering-program --config P --attach IFACE` compiles the program
//! from the profile's services, addresses and workers (worker 0's pipeline,
//! as `tack check` builds it: every worker compiles the same) and attaches
//! it in the current network namespace, replacing the `tcx` egress programs
//! the interface had. The attachment outlives the command; it goes with the
//! interface, or with `--detach`.

use std::ffi::CString;
use std::io;
use std::sync::Arc;

use tack_dataplane::VecFrame;
use tack_dataplane::pipeline::{Pipeline, SteerProgError, SteeringProgram, WorkerSpec};

use crate::profile::{FieldError, Profile, pipeline_config};

/// Why a steering program could not be made or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SteeringError {
    /// The profile's pipeline could not be built.
    #[error("{0}")]
    Profile(#[from] FieldError),
    /// No port of that name.
    #[error("no port `{0}` in the profile")]
    NoSuchPort(String),
    /// A worker polls another port: its flows cannot be steered to it here.
    #[error("worker {0} polls port `{1}`: every worker must poll the steered port")]
    OtherPort(usize, String),
    /// The pipeline refused the program.
    #[error("{0}")]
    Program(#[from] SteerProgError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// The steering program of `port` (the profile's first port if `None`)
/// for `profile`'s workers, and the port's name.
pub fn program_for(
    profile: &Profile,
    port: Option<&str>,
) -> Result<(SteeringProgram, String), SteeringError> {
    let (index, ps) = match port {
        Some(name) => profile
            .ports
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
            .ok_or_else(|| SteeringError::NoSuchPort(name.to_string()))?,
        None => profile
            .ports
            .iter()
            .enumerate()
            .next()
            .ok_or_else(|| SteeringError::NoSuchPort(String::new()))?,
    };
    let mut queues = Vec::new();
    for (i, w) in profile.workers.iter().enumerate() {
        if w.port != ps.name {
            return Err(SteeringError::OtherPort(i, w.port.clone()));
        }
        queues.push(w.queue);
    }
    let macs = vec![[2, 0, 0, 0, 0, 1]; profile.ports.len()];
    let mut cfg = pipeline_config(profile, &macs)?;
    cfg.conn4.capacity = 1;
    cfg.conn6.capacity = 1;
    cfg.sticky.capacity = 1;
    cfg.neigh.capacity = cfg.static_neighbors.len().max(1);
    let n_workers = u16::try_from(queues.len().max(1))
        .map_err(|_| FieldError::new("workers", "too many workers"))?;
    // Software steering: the runtime's choice for a port without RSS.
    let spec = WorkerSpec::software(0, n_workers, profile.ports.len());
    let mut spec = spec;
    spec.rx_queues = profile.ports.iter().map(|p| p.rx_queues).collect();
    let pipeline = Pipeline::<VecFrame>::new(Arc::new(cfg), spec)
        .map_err(|e| FieldError::new("services", e.to_string()))?;
    let prog = pipeline.steering_program(index as u16, &queues)?;
    Ok((prog, ps.name.clone()))
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_EGRESS: u32 = 47;

/// `union bpf_attr`, as 32-bit words (the commands used here need fewer
/// than 128 bytes; the rest stays zero as the kernel requires).
#[derive(Default)]
#[repr(C, align(8))]
struct Attr([u32; 32]);

impl Attr {
    fn u64_at(&mut self, word: usize, v: u64) {
        self.0[word] = v as u32;
        self.0[word + 1] = (v >> 32) as u32;
    }
}

#[allow(unsafe_code)]
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-initialised `union bpf_attr` of 128 bytes
    // whose pointers (set by the callers) point to live buffers that
    // outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An owned file descriptor.
struct Fd(i32);
impl Drop for Fd {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn ifindex(iface: &str) -> Result<u32, SteeringError> {
    let sys = |source| SteeringError::Sys {
        what: format!("interface {iface}"),
        source,
    };
    let name = CString::new(iface).map_err(|e| sys(io::Error::other(e)))?;
    #[allow(unsafe_code)]
    // SAFETY: `name` is a NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if i == 0 {
        return Err(sys(io::Error::last_os_error()));
    }
    Ok(i)
}

fn load(prog: &SteeringProgram) -> Result<Fd, SteeringError> {
    let insns = prog.bytes();
    let license = b"GPL\0";
    let mut log = vec![0u8; 0];
    for level in [0u32, 1] {
        if level == 1 {
            log = vec![0u8; 16 << 20];
        }
        let mut a = Attr::default();
        a.0[0] = BPF_PROG_TYPE_SCHED_CLS;
        a.0[1] = prog.insns().len() as u32;
        a.u64_at(2, insns.as_ptr() as u64);
        a.u64_at(4, license.as_ptr() as u64);
        a.0[6] = level;
        a.0[7] = log.len() as u32;
        a.u64_at(
            8,
            if level == 1 {
                log.as_mut_ptr() as u64
            } else {
                0
            },
        );
        let name = b"tack_steer";
        for (i, c) in name.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            a.0[12 + i] = u32::from_ne_bytes(w);
        }
        match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => return Ok(Fd(fd as i32)),
            Err(e) if level == 1 => {
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0');
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(SteeringError::Sys {
                    what: format!("loading the program (verifier: {})", tail.join(" | ")),
                    source: e,
                });
            }
            Err(_) => {}
        }
    }
    unreachable!("the second try returns")
}

/// The ids of the `tcx` egress programs of interface `ifindex`.
fn attached(ifindex: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut a = Attr::default();
    a.0[0] = ifindex;
    a.0[1] = BPF_TCX_EGRESS;
    a.u64_at(4, ids.as_mut_ptr() as u64);
    a.0[6] = ids.len() as u32;
    bpf(BPF_PROG_QUERY, &mut a)?;
    ids.truncate(a.0[6] as usize);
    Ok(ids)
}

/// Removes every `tcx` egress program of `iface`; how many there were.
pub fn detach(iface: &str) -> Result<usize, SteeringError> {
    let ifi = ifindex(iface)?;
    let sys = |what: &str, source| SteeringError::Sys {
        what: format!("{what} ({iface})"),
        source,
    };
    let ids = attached(ifi).map_err(|e| sys("listing the tcx egress programs", e))?;
    for &id in &ids {
        let mut a = Attr::default();
        a.0[0] = id;
        let fd =
            Fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map_err(|e| sys("opening a program", e))? as i32);
        let mut a = Attr::default();
        a.0[0] = ifi;
        a.0[1] = fd.0 as u32;
        a.0[2] = BPF_TCX_EGRESS;
        bpf(BPF_PROG_DETACH, &mut a).map_err(|e| sys("detaching a program", e))?;
    }
    Ok(ids.len())
}

/// Attaches `prog` to the transmit side of `iface` (`tcx` egress), after
/// removing the programs there; how many were removed.
pub fn attach(iface: &str, prog: &SteeringProgram) -> Result<usize, SteeringError> {
    let ifi = ifindex(iface)?;
    let fd = load(prog)?;
    let removed = detach(iface)?;
    let mut a = Attr::default();
    a.0[0] = ifi;
    a.0[1] = fd.0 as u32;
    a.0[2] = BPF_TCX_EGRESS;
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|source| SteeringError::Sys {
        what: format!("attaching to {iface} (tcx egress)"),
        source,
    })?;
    Ok(removed)
}
