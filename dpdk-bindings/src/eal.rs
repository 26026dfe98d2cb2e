//! The Environment Abstraction Layer: initialised once per process, lcore
//! enumeration and launching closures on worker lcores, TSC, device probing,
//! and DPDK's log stream bridged into the `log` crate.

use std::ffi::{CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::sys;

/// Proof that EAL has been initialised in this process. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Eal {
    _private: (),
}

/// What the first call to [`Eal::init`] produced; later calls see it.
static INIT: Mutex<Option<Result<()>>> = Mutex::new(None);

impl Eal {
    /// Initialises EAL with `args` (without the program name, which is added).
    ///
    /// EAL can be initialised only once per process: a second call returns an
    /// error saying so, whatever the arguments. Bad arguments are an error, not
    /// a panic (DPDK's own description of them goes to the `log` crate under the
    /// target `dpdk`).
    pub fn init<I, S>(args: I) -> Result<Eal>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut state = INIT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = state.as_ref() {
            return Err(match prev {
                Ok(()) => {
                    Error::invalid("rte_eal_init", "EAL is already initialised in this process")
                }
                Err(e) => Error::invalid(
                    "rte_eal_init",
                    format!(
                        "an earlier EAL initialisation failed ({e}); EAL cannot be initialised twice"
                    ),
                ),
            });
        }
        let mut owned = vec![CString::new("tack").expect("static name has no NUL")];
        for a in args {
            let a = a.as_ref();
            match CString::new(a) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    return Err(Error::invalid(
                        "rte_eal_init",
                        format!("EAL argument {a:?} contains a NUL byte"),
                    ));
                }
            }
        }
        install_log_bridge();
        // EAL may keep pointers into argv for the life of the process: leak it on purpose.
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that live forever.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        let result = if rc < 0 {
            Err(Error::last("rte_eal_init"))
        } else {
            Ok(())
        };
        *state = Some(result.clone());
        result.map(|()| Eal { _private: () })
    }

    /// The EAL handle if an earlier [`Eal::init`] succeeded.
    pub fn get() -> Option<Eal> {
        let state = INIT.lock().unwrap_or_else(|p| p.into_inner());
        matches!(state.as_ref(), Some(Ok(()))).then_some(Eal { _private: () })
    }

    /// The main lcore (the thread that called [`Eal::init`]).
    pub fn main_lcore(self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_get_main_lcore() }
    }

    /// Every enabled lcore other than the main one, in order.
    pub fn worker_lcores(self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised; rte_get_next_lcore only reads its config.
        let mut i = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while i < sys::RTE_MAX_LCORE {
            out.push(i);
            // SAFETY: as above.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
        }
        out
    }

    /// Number of enabled lcores, main included.
    pub fn lcore_count(self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_lcore_count() }
    }

    /// The NUMA socket of `lcore`.
    pub fn lcore_socket(self, lcore: u32) -> u32 {
        // SAFETY: EAL is initialised; out-of-range ids return SOCKET_ID_ANY-like values.
        unsafe { sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `f` on worker `lcore`; join the returned handle to get its result.
    ///
    /// Fails if `lcore` is not an enabled worker lcore or is busy.
    pub fn launch<F>(self, lcore: u32, f: F) -> Result<LcoreJoin>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if !self.worker_lcores().contains(&lcore) {
            return Err(Error::invalid(
                format!("rte_eal_remote_launch(lcore {lcore})"),
                "not an enabled worker lcore (check the EAL -l/--lcores argument)",
            ));
        }
        type Job = Box<dyn FnOnce() -> i32 + Send>;
        unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
            // SAFETY: arg came from Box::into_raw(Box<Job>) below and is used once.
            let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
            match catch_unwind(AssertUnwindSafe(job)) {
                Ok(rc) => rc,
                Err(_) => {
                    log::error!("a closure launched on an lcore panicked");
                    -1
                }
            }
        }
        let job: Box<Job> = Box::new(Box::new(f));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: trampoline has the lcore_function_t signature and takes ownership of arg.
        let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc < 0 {
            // SAFETY: the launch failed, so the closure was never handed over.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(Error::from_errno(
                format!("rte_eal_remote_launch(lcore {lcore})"),
                rc,
            ));
        }
        Ok(LcoreJoin {
            lcore,
            joined: false,
        })
    }

    /// Probes (hot-plugs) a device from a devargs string, e.g. a virtual device
    /// `net_ring0` / `net_af_packet0,iface=veth0`, or a PCI address allowed at init.
    pub fn probe_device(self, devargs: &str) -> Result<()> {
        let c = CString::new(devargs)
            .map_err(|_| Error::invalid("rte_dev_probe", "devargs contains a NUL byte"))?;
        // SAFETY: c is a valid C string.
        let rc = unsafe { sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno(format!("rte_dev_probe({devargs})"), rc));
        }
        Ok(())
    }

    /// Removes a hot-plugged virtual device by name (e.g. `net_ring0`).
    pub fn remove_vdev(self, name: &str) -> Result<()> {
        let bus = CString::new("vdev").expect("static");
        let c = CString::new(name)
            .map_err(|_| Error::invalid("rte_eal_hotplug_remove", "name contains a NUL byte"))?;
        // SAFETY: both are valid C strings.
        let rc = unsafe { sys::rte_eal_hotplug_remove(bus.as_ptr(), c.as_ptr()) };
        if rc < 0 {
            return Err(Error::from_errno(
                format!("rte_eal_hotplug_remove(vdev, {name})"),
                rc,
            ));
        }
        Ok(())
    }

    /// Releases EAL resources at the end of the process.
    ///
    /// # Safety
    /// No DPDK object (mbuf, mempool, ring, port, queue) may be used after this,
    /// and every launched lcore must have been joined.
    pub unsafe fn cleanup(self) -> Result<()> {
        // SAFETY: the caller guarantees nothing DPDK is used afterwards.
        let rc = unsafe { sys::rte_eal_cleanup() };
        if rc < 0 {
            return Err(Error::from_errno("rte_eal_cleanup", rc));
        }
        Ok(())
    }
}

/// The lcore id of the calling thread, `None` outside EAL threads.
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local.
    let id = unsafe { sys::tack_rte_lcore_id() };
    (id < sys::RTE_MAX_LCORE).then_some(id)
}

/// The CPU's time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC.
    unsafe { sys::tack_rte_rdtsc() }
}

/// TSC ticks per second, as measured by EAL (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL measured at init.
    unsafe { sys::rte_get_tsc_hz() }
}

/// The DPDK version string, e.g. `DPDK 22.11.11`.
pub fn version() -> String {
    // SAFETY: rte_version returns a static string (it is inline; the shim-less
    // alternative is the RTE_VER_* constants, used here).
    format!(
        "DPDK {}.{}.{}",
        sys::RTE_VER_YEAR,
        sys::RTE_VER_MONTH,
        sys::RTE_VER_MINOR
    )
}

/// A closure running on a worker lcore.
#[derive(Debug)]
#[must_use = "join the lcore to learn how it ended"]
pub struct LcoreJoin {
    lcore: u32,
    joined: bool,
}

impl LcoreJoin {
    /// The lcore the closure runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the closure to return and gives its return value.
    pub fn join(mut self) -> i32 {
        self.joined = true;
        // SAFETY: lcore was launched by us.
        unsafe { sys::rte_eal_wait_lcore(self.lcore) }
    }
}

impl Drop for LcoreJoin {
    fn drop(&mut self) {
        if !self.joined {
            // SAFETY: as in join; an unjoined launch is waited for rather than leaked.
            unsafe {
                sys::rte_eal_wait_lcore(self.lcore);
            }
        }
    }
}

// ---- DPDK log stream → `log` crate -------------------------------------------------

unsafe extern "C" fn log_write(_cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    if buf.is_null() {
        return 0;
    }
    // SAFETY: stdio hands us `size` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    // SAFETY: reads a per-thread integer set by rte_log.
    let level = unsafe { sys::rte_log_cur_msg_loglevel() };
    let level = match level as u32 {
        sys::RTE_LOG_EMERG..=sys::RTE_LOG_ERR => log::Level::Error,
        sys::RTE_LOG_WARNING => log::Level::Warn,
        sys::RTE_LOG_NOTICE => log::Level::Info,
        sys::RTE_LOG_INFO => log::Level::Debug,
        _ => log::Level::Trace,
    };
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        log::log!(target: "dpdk", level, "{line}");
    }
    size as isize
}

fn install_log_bridge() {
    // SAFETY: the shim opens a write-only cookie stream that calls log_write;
    // rte_openlog_stream keeps it for the life of the process.
    unsafe {
        let stream = sys::tack_log_stream(Some(log_write));
        if !stream.is_null() {
            sys::rte_openlog_stream(stream);
        }
    }
}
