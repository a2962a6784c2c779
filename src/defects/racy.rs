//! Engines with one concurrency defect each, built on the parsed model the
//! way a runtime might build them, so that each race is real: readers and
//! writers share memory exactly as the defect says. Single-threaded they
//! serve the right weights (or nearly); only racing shows the defect.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::engine::reference::{validate_weight, CONTRACT};
use crate::engine::{BuildOptions, Context, Description, Engine, EngineInfo, Refitter};
use crate::model::{Model, Plan};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// One concurrency defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Race {
    /// Weights are copied in place, value by value, while readers run.
    InPlaceCopy,
    /// `refit()` returns at once and the new snapshot is published 3 ms later.
    DelayedPublish,
    /// All refitters share one staging area: a second writer's staging
    /// overwrites the first's, which is then lost.
    SharedStaging,
    /// A context keeps the snapshot it loaded and reloads it only every 64
    /// inferences.
    CachedSnapshot,
    /// `refit()` briefly publishes a snapshot whose new weights are only
    /// half copied, then the whole one.
    HalfBuiltSnapshot,
    /// Refitters take no writer lock: two refits build from the same
    /// published snapshot, and the later publish drops what the earlier one
    /// changed (a lost update, visible only when writers refit different
    /// weights).
    NoWriterLock,
}

type Weights = Vec<Arc<Vec<f32>>>;

struct Shared {
    model: Model,
    description: Description,
    race: Race,
    snapshot: Arc<ArcSwap<Weights>>,
    in_place: Vec<Vec<AtomicU32>>,
    staging: Mutex<Vec<Option<Vec<f32>>>>,
    writer: Arc<Mutex<()>>,
}

/// An engine carrying one [`Race`].
pub(crate) struct RacyEngine {
    shared: Arc<Shared>,
}

impl RacyEngine {
    /// Builds the engine over a model file.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn load(
        race: Race,
        name: String,
        path: &std::path::Path,
        options: &BuildOptions,
    ) -> Result<Self> {
        let model = Model::load(path)?;
        let description = Description::of(
            &model,
            EngineInfo {
                name,
                version: env!("CARGO_PKG_VERSION").into(),
                contract: CONTRACT,
                refit_enabled: options.enable_refit,
            },
        );
        let initial: Weights = model
            .initializers()
            .iter()
            .map(|i| Arc::new(i.values.clone()))
            .collect();
        let in_place = model
            .initializers()
            .iter()
            .map(|i| {
                i.values
                    .iter()
                    .map(|v| AtomicU32::new(v.to_bits()))
                    .collect()
            })
            .collect();
        Ok(RacyEngine {
            shared: Arc::new(Shared {
                staging: Mutex::new(vec![None; description.weights.len()]),
                description,
                race,
                snapshot: Arc::new(ArcSwap::from_pointee(initial)),
                in_place,
                writer: Arc::new(Mutex::new(())),
                model,
            }),
        })
    }
}

impl Engine for RacyEngine {
    fn description(&self) -> &Description {
        &self.shared.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(RacyContext {
            shared: Arc::clone(&self.shared),
            plan: None,
            scratch: Vec::new(),
            cached: None,
            calls: AtomicUsize::new(0),
        }))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        if !self.shared.description.info.refit_enabled {
            return Err(Error::RefitDisabled);
        }
        Ok(Box::new(RacyRefitter {
            staged: vec![None; self.shared.description.weights.len()],
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct RacyContext {
    shared: Arc<Shared>,
    plan: Option<Plan>,
    scratch: Vec<Vec<f32>>,
    cached: Option<Arc<Weights>>,
    calls: AtomicUsize,
}

impl Context for RacyContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let sh = Arc::clone(&self.shared);
        let plan = sh.model.plan_cached(&mut self.plan, inputs)?;
        let weights: Arc<Weights> = match sh.race {
            Race::InPlaceCopy => Arc::new(
                sh.in_place
                    .iter()
                    .map(|w| {
                        Arc::new(
                            w.iter()
                                .map(|a| f32::from_bits(a.load(Ordering::Relaxed)))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
            Race::CachedSnapshot => {
                let n = self.calls.fetch_add(1, Ordering::Relaxed);
                if n % 64 == 0 || self.cached.is_none() {
                    self.cached = Some(sh.snapshot.load_full());
                }
                Arc::clone(self.cached.as_ref().expect("cached above"))
            }
            _ => sh.snapshot.load_full(),
        };
        Ok(sh
            .model
            .run(plan, |i| &weights[i], inputs, &mut self.scratch))
    }
}

struct RacyRefitter {
    shared: Arc<Shared>,
    staged: Vec<Option<Vec<f32>>>,
}

impl Refitter for RacyRefitter {
    fn set_named_weights(&mut self, name: &str, weights: &Tensor) -> Result<()> {
        let i = validate_weight(&self.shared.description.weights, name, weights)?;
        let v = weights.to_f32_vec();
        if self.shared.race == Race::SharedStaging {
            self.shared
                .staging
                .lock()
                .map_err(|_| Error::RefitDisabled)?[i] = Some(v);
        } else {
            self.staged[i] = Some(v);
        }
        Ok(())
    }

    fn missing(&self) -> Result<Vec<String>> {
        let shared_staging = self
            .shared
            .staging
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let staged = if self.shared.race == Race::SharedStaging {
            &shared_staging
        } else {
            &self.staged
        };
        Ok(self
            .shared
            .description
            .weights
            .iter()
            .zip(staged)
            .filter(|(_, s)| s.is_none())
            .map(|(w, _)| w.name.clone())
            .collect())
    }

    fn refit(&mut self) -> Result<()> {
        let sh = &self.shared;
        let staged: Vec<Option<Vec<f32>>> = if sh.race == Race::SharedStaging {
            std::mem::replace(
                &mut *sh.staging.lock().map_err(|_| Error::RefitDisabled)?,
                vec![None; sh.description.weights.len()],
            )
        } else {
            std::mem::replace(&mut self.staged, vec![None; sh.description.weights.len()])
        };
        if sh.race == Race::NoWriterLock {
            let base = sh.snapshot.load_full();
            // Building the next snapshot takes a while on a real model.
            std::thread::sleep(Duration::from_micros(100));
            sh.snapshot.store(Arc::new(build(&base, staged)));
            return Ok(());
        }
        let _writer = sh.writer.lock().unwrap_or_else(|p| p.into_inner());
        match sh.race {
            Race::InPlaceCopy => {
                for (w, new) in sh.in_place.iter().zip(&staged) {
                    if let Some(v) = new {
                        for (k, (a, x)) in w.iter().zip(v).enumerate() {
                            a.store(x.to_bits(), Ordering::Relaxed);
                            if k == v.len() / 2 {
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                // Keep the snapshot in step for single-threaded readers of it.
                let next = build(&sh.snapshot.load(), staged);
                sh.snapshot.store(Arc::new(next));
            }
            Race::DelayedPublish => {
                let (snapshot, writer) = (Arc::clone(&sh.snapshot), Arc::clone(&sh.writer));
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(3));
                    let _w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    let next = build(&snapshot.load(), staged);
                    snapshot.store(Arc::new(next));
                });
            }
            Race::HalfBuiltSnapshot => {
                let current = sh.snapshot.load_full();
                let half: Vec<Option<Vec<f32>>> = staged
                    .iter()
                    .zip(current.iter())
                    .map(|(new, old)| {
                        new.as_ref().map(|v| {
                            let mut h = old.to_vec();
                            let mid = v.len() / 2;
                            h[..mid].copy_from_slice(&v[..mid]);
                            h
                        })
                    })
                    .collect();
                sh.snapshot.store(Arc::new(build(&current, half)));
                std::thread::sleep(Duration::from_micros(50));
                sh.snapshot.store(Arc::new(build(&current, staged)));
            }
            Race::SharedStaging | Race::CachedSnapshot | Race::NoWriterLock => {
                let next = build(&sh.snapshot.load(), staged);
                sh.snapshot.store(Arc::new(next));
            }
        }
        Ok(())
    }
}

fn build(current: &Weights, staged: Vec<Option<Vec<f32>>>) -> Weights {
    current
        .iter()
        .zip(staged)
        .map(|(old, new)| new.map_or_else(|| Arc::clone(old), Arc::new))
        .collect()
}
