//! A Rust engine written outside the crate, against its public traits
//! only, run through the same `conformance_suite!` a vendor's crate uses.
//!
//! `Tiny` runs one 2-D convolution without padding, stride or dilation
//! (group 1, bias optional) by its own loops, and refuses every other model
//! as unsupported. It publishes each refit as a new `Arc` of all weights
//! under a lock, so inferences see whole versions. Built `torn`, it writes
//! refits in place, value by value, while inferences read them: the stress
//! scenarios must catch that.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use refit_harness::check::{self, CheckConfig, EngineFactory};
use refit_harness::engine::{
    BuildOptions, Concurrency, Context, Contract, Description, Engine, EngineInfo, FailedRefit,
    NonFinite, Precision, Refitter, Subset,
};
use refit_harness::model::conv::AutoPad;
use refit_harness::model::{Model, Op, Src};
use refit_harness::tensor::{DType, TensorData};
use refit_harness::{Error, Result, Tensor, TensorInfo};

/// The tiny engine's factory.
#[derive(Clone, Copy)]
pub struct Tiny {
    /// Refit in place while inferences run (a defect).
    pub torn: bool,
}

/// The one conv: shapes, and which weight is which.
#[derive(Clone, Copy)]
struct Conv {
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    weight: usize,
    bias: Option<usize>,
}

impl Conv {
    fn out_hw(&self) -> (usize, usize) {
        (self.h - self.kh + 1, self.w - self.kw + 1)
    }
}

/// Where the weights live.
enum Store {
    /// Every refit publishes a new version whole.
    Versions(RwLock<Arc<Vec<Vec<f32>>>>),
    /// f32 bits, overwritten in place.
    InPlace(Vec<Vec<AtomicU32>>),
}

struct Shared {
    conv: Conv,
    store: Store,
    /// Refits build on the latest version under this lock, so two refits
    /// of different weights do not lose each other's.
    writer: Mutex<()>,
    weights: Vec<TensorInfo>,
}

struct TinyEngine {
    description: Description,
    shared: Arc<Shared>,
}

fn unsupported(reason: String) -> Error {
    Error::Unsupported { reason }
}

fn f32_info(name: &str, shape: &[usize]) -> TensorInfo {
    TensorInfo {
        name: name.to_string(),
        dtype: DType::F32,
        shape: shape.iter().map(|&d| Some(d)).collect(),
    }
}

impl EngineFactory for Tiny {
    fn name(&self) -> String {
        if self.torn { "tiny-torn" } else { "tiny" }.into()
    }

    fn open(&self, path: &Path, options: &BuildOptions) -> Result<Box<dyn Engine>> {
        let model = Model::load(path)?;
        let nodes = model.nodes();
        let (attrs, weight, bias) = match nodes {
            [n] => match (&n.op, &n.inputs[..]) {
                (Op::Conv(attrs), [Src::Value(_), Src::Weight(w)]) => (attrs, *w, None),
                (Op::Conv(attrs), [Src::Value(_), Src::Weight(w), Src::Weight(b)]) => {
                    (attrs, *w, Some(*b))
                }
                _ => return Err(unsupported("one Conv layer only".into())),
            },
            _ => return Err(unsupported("one Conv layer only".into())),
        };
        let x = model
            .inputs()
            .first()
            .and_then(TensorInfo::static_shape)
            .ok_or_else(|| unsupported("one input of a known shape only".into()))?;
        let inits = model.initializers();
        let ws = &inits[weight].shape;
        let plain = attrs.group == 1
            && attrs.pads.iter().all(|&p| p == 0)
            && attrs.strides.iter().all(|&s| s == 1)
            && attrs.dilations.iter().all(|&d| d == 1)
            && matches!(attrs.auto_pad, AutoPad::NotSet | AutoPad::Valid);
        if x.len() != 4 || x[0] != 1 || ws.len() != 4 || !plain {
            return Err(unsupported(
                "a 2-D conv on batch 1 without padding, stride, dilation or groups only".into(),
            ));
        }
        let conv = Conv {
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: ws[0],
            kh: ws[2],
            kw: ws[3],
            weight,
            bias,
        };
        if ws[1] != conv.c_in || conv.kh > conv.h || conv.kw > conv.w {
            return Err(Error::engine(
                self.name(),
                "the weight does not fit the input",
            ));
        }
        let values: Vec<Vec<f32>> = inits.iter().map(|i| i.values.clone()).collect();
        let store = if self.torn {
            Store::InPlace(
                values
                    .iter()
                    .map(|v| v.iter().map(|x| AtomicU32::new(x.to_bits())).collect())
                    .collect(),
            )
        } else {
            Store::Versions(RwLock::new(Arc::new(values)))
        };
        let (oh, ow) = conv.out_hw();
        let weights: Vec<TensorInfo> = inits.iter().map(|i| i.info.clone()).collect();
        let info = EngineInfo {
            name: self.name(),
            version: "1".into(),
            contract: Contract {
                concurrency: Concurrency::Atomic,
                failed_refit: FailedRefit::RollsBack,
                subset: Subset::Accepted,
                non_finite: NonFinite::Rejected,
                precision: Precision::F32,
                error_factor: 1.0,
                numerics: refit_harness::engine::Numerics::DEFAULT,
            },
            refit_enabled: options.enable_refit,
        };
        Ok(Box::new(TinyEngine {
            description: Description {
                info,
                inputs: model.inputs().to_vec(),
                outputs: vec![f32_info(&model.outputs()[0].name, &[1, conv.c_out, oh, ow])],
                weights: weights.clone(),
            },
            shared: Arc::new(Shared {
                conv,
                store,
                writer: Mutex::new(()),
                weights,
            }),
        }))
    }
}

impl Engine for TinyEngine {
    fn description(&self) -> &Description {
        &self.description
    }
    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(TinyContext(Arc::clone(&self.shared))))
    }
    fn refitter(&self) -> Result<Box<dyn Refitter>> {
        if !self.info().refit_enabled {
            return Err(Error::RefitDisabled);
        }
        Ok(Box::new(TinyRefitter {
            shared: Arc::clone(&self.shared),
            staged: vec![None; self.shared.weights.len()],
        }))
    }
}

struct TinyContext(Arc<Shared>);

impl Context for TinyContext {
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let c = self.0.conv;
        let [x] = inputs else {
            return Err(Error::InputCount {
                expected: 1,
                found: inputs.len(),
            });
        };
        let shape = vec![1, c.c_in, c.h, c.w];
        if x.shape != shape {
            return Err(Error::ShapeMismatch {
                what: "input".into(),
                expected: shape,
                found: x.shape.clone(),
            });
        }
        x.validate("input")?;
        let x = x.to_f32_vec();
        let (oh, ow) = c.out_hw();
        let get = |store: &Store, w: usize, i: usize| -> f32 {
            match store {
                Store::InPlace(v) => f32::from_bits(v[w][i].load(Ordering::Relaxed)),
                Store::Versions(_) => unreachable!(),
            }
        };
        let snapshot = match &self.0.store {
            Store::Versions(lock) => {
                Some(Arc::clone(&lock.read().unwrap_or_else(|p| p.into_inner())))
            }
            Store::InPlace(_) => None,
        };
        let weight = |w: usize, i: usize| match &snapshot {
            Some(s) => s[w][i],
            None => get(&self.0.store, w, i),
        };
        // Its own loop order: output position outermost.
        let mut y = vec![0f32; c.c_out * oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                for m in 0..c.c_out {
                    let mut acc = c.bias.map_or(0.0, |b| weight(b, m));
                    for ci in 0..c.c_in {
                        for a in 0..c.kh {
                            for b in 0..c.kw {
                                acc += weight(c.weight, ((m * c.c_in + ci) * c.kh + a) * c.kw + b)
                                    * x[(ci * c.h + i + a) * c.w + j + b];
                            }
                        }
                    }
                    y[(m * oh + i) * ow + j] = acc;
                }
            }
        }
        Ok(vec![Tensor::f32([1, c.c_out, oh, ow], y)])
    }
}

struct TinyRefitter {
    shared: Arc<Shared>,
    staged: Vec<Option<Vec<f32>>>,
}

impl Refitter for TinyRefitter {
    fn set_named_weights(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let ws = &self.shared.weights;
        let i = ws
            .iter()
            .position(|w| w.name == name)
            .ok_or_else(|| Error::UnknownWeight {
                name: name.into(),
                known: ws
                    .iter()
                    .map(|w| w.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let what = format!("weight '{name}'");
        if t.dtype() != DType::F32 {
            return Err(Error::DTypeMismatch {
                what,
                expected: DType::F32,
                found: t.dtype().to_string(),
            });
        }
        let shape = ws[i].static_shape().unwrap_or_default();
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                what,
                expected: shape,
                found: t.shape.clone(),
            });
        }
        t.validate(&what)?;
        let TensorData::F32(v) = &t.data else {
            unreachable!("checked f32 above")
        };
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFinite {
                what,
                index,
                value: value.to_string(),
            });
        }
        self.staged[i] = Some(v.to_vec());
        Ok(())
    }

    fn missing(&self) -> Result<Vec<String>> {
        Ok(self
            .shared
            .weights
            .iter()
            .zip(&self.staged)
            .filter(|(_, s)| s.is_none())
            .map(|(w, _)| w.name.clone())
            .collect())
    }

    fn refit(&mut self) -> Result<()> {
        let _writer = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        match &self.shared.store {
            Store::Versions(lock) => {
                let mut next = Vec::clone(&lock.read().unwrap_or_else(|p| p.into_inner()));
                for (slot, staged) in next.iter_mut().zip(&mut self.staged) {
                    if let Some(v) = staged.take() {
                        *slot = v;
                    }
                }
                *lock.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            }
            Store::InPlace(all) => {
                for (slot, staged) in all.iter().zip(&mut self.staged) {
                    if let Some(v) = staged.take() {
                        for (k, (dst, x)) in slot.iter().zip(&v).enumerate() {
                            dst.store(x.to_bits(), Ordering::Relaxed);
                            if k == v.len() / 2 {
                                std::thread::yield_now();
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The whole suite on the tiny engine, one test per scenario, each in a
/// child process: it passes, with the models it refuses as skips. The
/// property test is left out by name: nearly every model it generates uses
/// padding, strides, groups or 1-D convs, which Tiny refuses, and a run
/// with no case it can build fails.
mod suite {
    refit_harness::conformance_suite!(refit_harness::suite::Suite::factory(super::Tiny {
        torn: false
    })
    .seconds(5.0)
    .stress_ms(300)
    .skip(["model_based"]));
}

/// The same engine refitting in place is caught by the stress scenarios,
/// with torn outputs as the evidence.
#[test]
fn the_tiny_engine_refitting_in_place_is_caught() {
    let scratch = tempfile::tempdir().unwrap();
    let mut c = CheckConfig::with_fixtures(scratch.path()).unwrap();
    c.only = vec!["stress_r1w1".into(), "stress_r4w2".into()];
    c.stress_ms = 300;
    let r = check::run(&Tiny { torn: true }, &c, &mut |_| {});
    assert_eq!(r.counts().1, 2, "{:#?}", r.outcomes);
    assert!(r
        .outcomes
        .iter()
        .all(|o| o.verdict.detail().contains("torn")));
}

/// Engine options on a suite of a Rust engine's factory, which builds with
/// its own options and would never see them, are refused.
#[test]
#[should_panic(expected = "builds its engines with its own factory")]
fn engine_options_on_a_rust_factory_are_refused() {
    let _ = refit_harness::suite::Suite::factory(Tiny { torn: false }).engine_options("{}");
}
