//! The race driver: inference threads and refit threads on one engine,
//! started together on a barrier, every operation timed on one monotonic
//! clock for the [history checker](crate::history). Every stress scenario
//! and the multi-thread demo race through it; what differs between them is
//! what an output decodes to ([`Race::run`]'s `decode`), which refits each
//! writer makes and when (its `plan`), and when the race ends ([`Until`]).
//!
//! For an engine whose contract is quiesced the driver keeps inference out
//! of every refit (a reader-writer lock around each call) and records the
//! operations inside that exclusion. A panic in a thread (an engine written
//! in Rust panicking in its call) becomes an error of the run, never a
//! vanished history.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::history::{Power, Version, Write};
use crate::tensor::Tensor;

/// Where and when one inference ran: its thread (readers are numbered
/// from 0) and its call's start and end in nanoseconds on the race's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The reader thread.
    pub thread: u32,
    /// When `infer()` was called.
    pub start: u64,
    /// When it returned.
    pub end: u64,
}

/// One refit a writer makes: stage `weights` on a new refitter, then
/// commit them with `refit()`, recorded as a write of `version`.
#[derive(Clone, Debug)]
pub struct Refit {
    /// The version the refit writes.
    pub version: Version,
    /// How errors name it: `v3`, `all-3`.
    pub label: String,
    /// The weights staged, by name.
    pub weights: Vec<(String, Tensor)>,
    /// Pause before staging.
    pub before: Duration,
    /// Pause between staging and `refit()` (staged weights must stay
    /// invisible meanwhile).
    pub staged: Duration,
    /// Pause after the refit.
    pub after: Duration,
}

/// Which kind of thread a [`RaceError::Panicked`] was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A reader.
    Inference,
    /// A writer.
    Refit,
}

/// An engine call of the race that failed, or a thread that panicked.
#[derive(Debug, thiserror::Error)]
pub enum RaceError {
    /// An engine call failed; `step` says which (`infer`, `refit v3`).
    #[error("{step}: {error}")]
    Engine {
        /// The call: `create a context`, `infer`, `create a refitter`,
        /// `stage v3`, `refit v3`.
        step: String,
        /// The engine's error.
        error: crate::Error,
    },
    /// A thread panicked (the engine's call panicked in it).
    #[error("{} thread panicked: {message}", match role { Role::Inference => "an inference", Role::Refit => "a refit" })]
    Panicked {
        /// The thread's kind.
        role: Role,
        /// The panic's message.
        message: String,
    },
}

impl From<RaceError> for String {
    fn from(e: RaceError) -> String {
        e.to_string()
    }
}

/// When a race ends: when every writer has made its plan (then after
/// `linger`), or, with a `duration`, once that much time has passed and,
/// with a `power`, the run has reached it or `cap` has passed in all.
#[derive(Clone, Copy, Debug)]
pub struct Until {
    /// Race at least this long; `None`: until the writers finish.
    pub duration: Option<Duration>,
    /// After `duration`, race on until this power is reached or `cap`
    /// has passed since the start.
    pub power: Option<(Power, Duration)>,
    /// After the writers finish, let the readers run this much longer.
    pub linger: Duration,
}

/// A race's set-up; [`Race::run`] races it.
pub struct Race<'a> {
    /// The engine raced.
    pub engine: &'a dyn Engine,
    /// The input every inference gets.
    pub input: Tensor,
    /// Inference threads.
    pub readers: usize,
    /// Refit threads, numbered after the readers in the history.
    pub writers: usize,
    /// Keep inference out of every refit (the engine's contract asks for
    /// it).
    pub quiesced: bool,
    /// Pause between a reader's inferences.
    pub read_pause: Duration,
    /// At most this many inferences recorded per reader.
    pub max_reads: usize,
    /// Writers wait until every reader has finished one inference (which
    /// then saw the initial version).
    pub writers_after_first_read: bool,
    /// When the race ends.
    pub until: Until,
}

/// What a race recorded.
#[derive(Debug)]
pub struct Raced<R, E> {
    /// What each inference decoded to, reader by reader.
    pub reads: Vec<R>,
    /// Every successful refit, writer by writer.
    pub writes: Vec<Write>,
    /// The first few errors, in the order they happened: a thread stops at
    /// its first.
    pub errors: Vec<E>,
    /// How long the race ran, from the barrier to the last thread's end.
    pub elapsed: Duration,
}

/// Errors kept per race.
const KEPT_ERRORS: usize = 5;

/// Counts a reader's first inference once, also when the reader panics
/// or fails before it, so writers waiting on it never wait forever.
struct FirstRead<'a>(&'a AtomicUsize, bool);

impl FirstRead<'_> {
    fn arrive(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for FirstRead<'_> {
    fn drop(&mut self) {
        self.arrive();
    }
}

/// The message a panic carried.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl Race<'_> {
    /// Races the readers and writers. Each reader infers on
    /// [`Race::input`] until the race ends (and once more after: a reader
    /// sees the last refit), handing each output to `decode`, whose error
    /// stops that reader. Writer `w` makes `plan(w, 0)`, `plan(w, 1)`, ...
    /// until it returns `None` or the race ends; each refit that returned
    /// goes to `committed`, whose error stops that writer. `live` is called
    /// about every 250 ms with the inferences and refits done so far.
    pub fn run<R, E, D, P, C>(
        &self,
        decode: D,
        plan: P,
        committed: C,
        live: &dyn Fn(usize),
    ) -> Raced<R, E>
    where
        R: Send,
        E: From<RaceError> + Send,
        D: Fn(Span, &[Tensor]) -> Result<R, E> + Sync,
        P: Fn(usize, usize) -> Option<Refit> + Sync,
        C: Fn(&Write) -> Result<(), E> + Sync,
    {
        let (decode, plan, committed) = (&decode, &plan, &committed);
        let base = Instant::now();
        let now = || base.elapsed().as_nanos() as u64;
        let barrier = Barrier::new(self.readers + self.writers + 1);
        let stop = AtomicBool::new(false);
        let gate = RwLock::new(());
        let first_reads = AtomicUsize::new(0);
        let errors = Mutex::new(Vec::<E>::new());
        let error = |e: E| {
            let mut v = errors.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() < KEPT_ERRORS {
                v.push(e);
            }
        };
        // Live power, to know when to stop: inferences done, refits done,
        // and refits that saw an inference in flight as they started or
        // ended.
        let in_flight = AtomicUsize::new(0);
        let reads_done = AtomicUsize::new(0);
        let refits_done = AtomicUsize::new(0);
        let overlapped = AtomicUsize::new(0);
        let engine = self.engine;
        let (reads, writes, elapsed) = std::thread::scope(|s| {
            let readers: Vec<_> = (0..self.readers as u32)
                .map(|thread| {
                    let (barrier, stop, gate, error, first_reads) =
                        (&barrier, &stop, &gate, &error, &first_reads);
                    let (in_flight, reads_done, now) = (&in_flight, &reads_done, &now);
                    s.spawn(move || {
                        let mut first = FirstRead(first_reads, false);
                        let mut out = Vec::new();
                        let ctx = engine.context();
                        barrier.wait();
                        let mut ctx = match ctx {
                            Ok(c) => c,
                            Err(e) => {
                                error(E::from(RaceError::Engine {
                                    step: "create a context".into(),
                                    error: e,
                                }));
                                return out;
                            }
                        };
                        loop {
                            let last = stop.load(Ordering::Relaxed);
                            let guard = self
                                .quiesced
                                .then(|| gate.read().unwrap_or_else(|p| p.into_inner()));
                            in_flight.fetch_add(1, Ordering::SeqCst);
                            let start = now();
                            let y = ctx.infer(std::slice::from_ref(&self.input));
                            let end = now();
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            reads_done.fetch_add(1, Ordering::Relaxed);
                            drop(guard);
                            first.arrive();
                            let y = match y {
                                Ok(y) => y,
                                Err(e) => {
                                    error(E::from(RaceError::Engine {
                                        step: "infer".into(),
                                        error: e,
                                    }));
                                    break;
                                }
                            };
                            match decode(Span { thread, start, end }, &y) {
                                Ok(r) => out.push(r),
                                Err(e) => {
                                    error(e);
                                    break;
                                }
                            }
                            if last || out.len() >= self.max_reads {
                                break;
                            }
                            if !self.read_pause.is_zero() {
                                std::thread::sleep(self.read_pause);
                            }
                        }
                        out
                    })
                })
                .collect();
            let writers: Vec<_> = (0..self.writers)
                .map(|w| {
                    let (barrier, stop, gate, error, first_reads) =
                        (&barrier, &stop, &gate, &error, &first_reads);
                    let (in_flight, refits_done, overlapped, now) =
                        (&in_flight, &refits_done, &overlapped, &now);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        barrier.wait();
                        while self.writers_after_first_read
                            && first_reads.load(Ordering::SeqCst) < self.readers
                        {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        for i in 0.. {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let Some(step) = plan(w, i) else { break };
                            if !step.before.is_zero() {
                                std::thread::sleep(step.before);
                            }
                            let mut r = match engine.refitter() {
                                Ok(r) => r,
                                Err(e) => {
                                    error(E::from(RaceError::Engine {
                                        step: "create a refitter".into(),
                                        error: e,
                                    }));
                                    break;
                                }
                            };
                            if let Some(e) = step
                                .weights
                                .iter()
                                .find_map(|(name, t)| r.set_named_weights(name, t).err())
                            {
                                error(E::from(RaceError::Engine {
                                    step: format!("stage {}", step.label),
                                    error: e,
                                }));
                                break;
                            }
                            if !step.staged.is_zero() {
                                std::thread::sleep(step.staged);
                            }
                            let guard = self
                                .quiesced
                                .then(|| gate.write().unwrap_or_else(|p| p.into_inner()));
                            let busy = in_flight.load(Ordering::SeqCst) > 0;
                            let start = now();
                            let result = r.refit();
                            let end = now();
                            if busy || in_flight.load(Ordering::SeqCst) > 0 {
                                overlapped.fetch_add(1, Ordering::Relaxed);
                            }
                            refits_done.fetch_add(1, Ordering::Relaxed);
                            drop(guard);
                            if let Err(e) = result {
                                error(E::from(RaceError::Engine {
                                    step: format!("refit {}", step.label),
                                    error: e,
                                }));
                                break;
                            }
                            let write = Write {
                                thread: (self.readers + w) as u32,
                                start,
                                end,
                                version: step.version,
                            };
                            if let Err(e) = committed(&write) {
                                error(e);
                                break;
                            }
                            out.push(write);
                            if !step.after.is_zero() {
                                std::thread::sleep(step.after);
                            }
                        }
                        out
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let reached = |min: &Power| {
                Power {
                    inferences: reads_done.load(Ordering::Relaxed),
                    refits: refits_done.load(Ordering::Relaxed),
                    overlapped: overlapped.load(Ordering::Relaxed),
                }
                .reaches(min)
            };
            let tick = Duration::from_millis(5)
                .min(self.until.duration.unwrap_or(Duration::MAX))
                .max(Duration::from_micros(100));
            let mut shown = Instant::now();
            loop {
                if writers.iter().all(|h| h.is_finished()) {
                    std::thread::sleep(self.until.linger);
                    break;
                }
                if let Some(d) = self.until.duration {
                    let t = start.elapsed();
                    let enough = match &self.until.power {
                        Some((min, cap)) => reached(min) || t >= *cap,
                        None => true,
                    };
                    if t >= d && enough {
                        break;
                    }
                }
                std::thread::sleep(tick);
                if shown.elapsed() >= Duration::from_millis(250) {
                    shown = Instant::now();
                    live(reads_done.load(Ordering::Relaxed) + refits_done.load(Ordering::Relaxed));
                }
            }
            stop.store(true, Ordering::Relaxed);
            let panicked = |role: Role, p: Box<dyn std::any::Any + Send>| {
                error(E::from(RaceError::Panicked {
                    role,
                    message: panic_message(p.as_ref()),
                }));
            };
            let reads: Vec<R> = readers
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|p| {
                        panicked(Role::Inference, p);
                        Vec::new()
                    })
                })
                .collect();
            let writes: Vec<Write> = writers
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|p| {
                        panicked(Role::Refit, p);
                        Vec::new()
                    })
                })
                .collect();
            (reads, writes, start.elapsed())
        });
        Raced {
            reads,
            writes,
            errors: errors.into_inner().unwrap_or_else(|p| p.into_inner()),
            elapsed,
        }
    }
}
