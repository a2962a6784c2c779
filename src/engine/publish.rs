//! One value published atomically: readers load the current version without
//! waiting; writers, one at a time, build the next version from the current
//! and publish it with a single store (read-copy-update).
//!
//! This is the reference engine's whole concurrency protocol. Normal builds
//! use `arc-swap`; with `--cfg loom` the same protocol is built on loom's
//! primitives and checked exhaustively by the tests at the bottom
//! (`RUSTFLAGS="--cfg loom" cargo test --lib loom`).

#[cfg(not(loom))]
use std::sync::{Arc, Mutex};

#[cfg(loom)]
use loom::sync::{Arc, Mutex, RwLock};

/// What [`Published::load`] returns: a handle that keeps that version alive.
#[cfg(not(loom))]
pub(crate) type Loaded<T> = arc_swap::Guard<Arc<T>>;
/// What [`Published::load`] returns: a handle that keeps that version alive.
#[cfg(loom)]
pub(crate) type Loaded<T> = Arc<T>;

/// An atomically published value.
pub(crate) struct Published<T> {
    #[cfg(not(loom))]
    cell: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    cell: RwLock<Arc<T>>,
    writer: Mutex<()>,
}

impl<T> Published<T> {
    /// Publishes the first version.
    pub(crate) fn new(value: T) -> Self {
        Published {
            #[cfg(not(loom))]
            cell: arc_swap::ArcSwap::from_pointee(value),
            #[cfg(loom)]
            cell: RwLock::new(Arc::new(value)),
            writer: Mutex::new(()),
        }
    }

    /// The current version. Never blocks on a writer.
    pub(crate) fn load(&self) -> Loaded<T> {
        #[cfg(not(loom))]
        return self.cell.load();
        #[cfg(loom)]
        return Arc::clone(&self.cell.read().unwrap());
    }

    /// Builds the next version from the current one and publishes it with
    /// one store. Writers are serialised, so two updates never build from the
    /// same version and one never loses the other's change.
    pub(crate) fn update(&self, next: impl FnOnce(&T) -> T) {
        // A poisoned lock only means another writer panicked before its
        // store; the published version is still whole.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.load();
        let value = Arc::new(next(&current));
        #[cfg(not(loom))]
        self.cell.store(value);
        #[cfg(loom)]
        {
            *self.cell.write().unwrap() = value;
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::Published;
    use loom::sync::Arc;
    use loom::thread;

    /// A reader never sees a half-built version, and a version whose
    /// update returned is seen by every later load.
    #[test]
    fn whole_versions_and_returned_updates_are_seen() {
        loom::model(|| {
            let p = Arc::new(Published::new([0u32; 2]));
            let reader = {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    let a = p.load();
                    assert_eq!(a[0], a[1], "torn read");
                    let first = a[0];
                    let b = p.load();
                    assert_eq!(b[0], b[1], "torn read");
                    assert!(b[0] >= first, "a reader went back in time");
                })
            };
            let writer = {
                let p = Arc::clone(&p);
                thread::spawn(move || p.update(|_| [1, 1]))
            };
            writer.join().unwrap();
            assert_eq!(*p.load(), [1, 1], "a returned update is not visible");
            reader.join().unwrap();
        });
    }

    /// Two writers changing different parts of the value both land.
    #[test]
    fn concurrent_updates_are_not_lost() {
        loom::model(|| {
            let p = Arc::new(Published::new([0u32; 2]));
            let writers: Vec<_> = (0..2)
                .map(|i| {
                    let p = Arc::clone(&p);
                    thread::spawn(move || {
                        p.update(|cur| {
                            let mut next = *cur;
                            next[i] = i as u32 + 1;
                            next
                        })
                    })
                })
                .collect();
            let reader = {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    let v = p.load();
                    assert!(v[0] <= 1 && v[1] <= 2);
                })
            };
            for w in writers {
                w.join().unwrap();
            }
            reader.join().unwrap();
            assert_eq!(*p.load(), [1, 2], "an update was lost");
        });
    }
}
