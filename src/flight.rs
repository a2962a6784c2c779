//! The flight recorder of a scenario's child process: the step it is on and
//! the engine calls in flight, for the parent to name when the child
//! crashes or hangs.
//!
//! A child announces each step on stdout (a line starting with
//! [`STEP_MARK`]). Every plugin ABI call holds a slot while it runs; on a
//! fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) or on the
//! parent's SIGTERM after a timeout, a signal handler writes one
//! [`CALL_MARK`] line per call in flight (its name and how long it has
//! run) with `write(2)` alone, then lets the signal take the process down.
//! Outside a child ([`enable`] not called) recording costs two relaxed
//! atomic operations per call and steps print nothing.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Starts a step line on a child's stdout.
pub const STEP_MARK: &str = "REFIT-STEP ";
/// Starts a call-in-flight line: `REFIT-IN-FLIGHT <call> <milliseconds>`.
pub const CALL_MARK: &str = "REFIT-IN-FLIGHT ";
/// Starts the line a signal handler writes: `REFIT-SIGNAL <number>`.
pub(crate) const SIGNAL_MARK: &str = "REFIT-SIGNAL ";

static ENABLED: AtomicBool = AtomicBool::new(false);
const SLOTS: usize = 64;
static CALLS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static STARTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static BASE: OnceLock<Instant> = OnceLock::new();

/// The calls a slot can name: the ABI table's slots, then its optional
/// ones, then a catch-all (index + 1 is stored).
fn name(index: usize) -> &'static str {
    let slots = &crate::ffi::sys::SLOTS;
    match index.checked_sub(slots.len()) {
        None => slots[index],
        Some(0) => "engine_numerics",
        Some(_) => "an engine call",
    }
}

/// How many names [`name`] knows.
const NAMES: usize = crate::ffi::sys::SLOTS.len() + 2;

fn nanos() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A call in flight; the slot is freed when it drops.
#[must_use = "the call is in flight while the guard lives"]
pub struct InFlight(Option<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            CALLS[i].store(0, Ordering::Release);
        }
    }
}

/// Records `call` (an ABI function name) as in flight until the guard
/// drops. Does nothing outside a child.
pub fn call(call: &'static str) -> InFlight {
    if !ENABLED.load(Ordering::Relaxed) {
        return InFlight(None);
    }
    let id = (0..NAMES).find(|&i| name(i) == call).unwrap_or(NAMES - 1) + 1;
    let start = nanos();
    for i in 0..SLOTS {
        if CALLS[i]
            .compare_exchange(0, usize::MAX, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            STARTS[i].store(start, Ordering::Relaxed);
            CALLS[i].store(id, Ordering::Release);
            return InFlight(Some(i));
        }
    }
    InFlight(None)
}

/// Announces the step a scenario is on (in a child; nothing otherwise).
pub fn step(text: &str) {
    if ENABLED.load(Ordering::Relaxed) {
        let line = text.replace(['\n', '\r'], " ");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{STEP_MARK}{line}");
        let _ = out.flush();
    }
}

/// Whether this process is a scenario's child.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns recording on and installs the signal handlers: for a child
/// process only (it replaces the runtime's stack-overflow handler).
pub fn enable() {
    BASE.get_or_init(Instant::now);
    ENABLED.store(true, Ordering::SeqCst);
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGABRT,
        libc::SIGTERM,
    ] {
        // SAFETY: a plain sigaction with a handler that only reads atomics
        // and calls write(2), signal(2) and raise(3).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// A fixed buffer formatted without allocating (for the signal handler).
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn write(&self) {
        // SAFETY: write(2) on stdout from a buffer we own.
        unsafe { libc::write(1, self.buf.as_ptr().cast(), self.len) };
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let now = BASE.get().map_or(0, |b| b.elapsed().as_nanos() as u64);
    let mut line = Line {
        buf: [0; 160],
        len: 0,
    };
    line.push(b"\n");
    line.push(SIGNAL_MARK.as_bytes());
    line.number(sig as u64);
    line.push(b"\n");
    line.write();
    for i in 0..SLOTS {
        let id = CALLS[i].load(Ordering::Acquire);
        if id == 0 || id > NAMES {
            continue;
        }
        let start = STARTS[i].load(Ordering::Relaxed);
        let mut line = Line {
            buf: [0; 160],
            len: 0,
        };
        line.push(CALL_MARK.as_bytes());
        line.push(name(id - 1).as_bytes());
        line.push(b" ");
        line.number(now.saturating_sub(start) / 1_000_000);
        line.push(b"\n");
        line.write();
    }
    // SAFETY: back to the default action, then the same signal again: it
    // is delivered when this handler returns, and ends the process.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Sends `signal` to the process group `group` (a child started with
/// `process_group(0)`, whose group id is its pid).
pub(crate) fn kill_group(group: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals that group only.
    unsafe { libc::kill(-(group as libc::pid_t), signal) };
}
