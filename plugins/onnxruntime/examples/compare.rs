//! ONNX Runtime (through the plugin ABI) beside the reference engine, in
//! one run: inference on each fixture, the two engines' samples
//! alternating (`bench::sampler::time_pair`); a refit of every weight of
//! conv_wide on each; and each engine's refit against reloading it with the
//! same weights (writing the model file with them, then building). Prints a Markdown table of medians and ratios.
//!
//! ```sh
//! export ORT_DYLIB_PATH=$(plugins/onnxruntime/setup.sh)
//! cargo build --release -p refit-onnxruntime
//! cargo run --release -p refit-onnxruntime --example compare
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use refit_harness::bench::sampler::{time, time_pair};
use refit_harness::bench::summary::human;
use refit_harness::engine::{refit_all, BuildOptions};
use refit_harness::spec::EngineSpec;
use refit_harness::{fixtures, Engine, Tensor};

const SAMPLES: usize = 11;
const SAMPLE: Duration = Duration::from_millis(100);

fn inputs(e: &dyn Engine) -> Vec<Tensor> {
    e.inputs()
        .iter()
        .map(|i| Tensor::full(i.static_shape().unwrap_or_default(), 1.0))
        .collect()
}

/// Every weight of `e` at `v`.
fn all_at(e: &dyn Engine, v: f32) -> Vec<(String, Tensor)> {
    e.weights()
        .iter()
        .map(|w| {
            (
                w.name.clone(),
                Tensor::full(w.static_shape().unwrap_or_default(), v),
            )
        })
        .collect()
}

fn main() -> refit_harness::Result<()> {
    let exe = std::env::current_exe().expect("the example's path");
    let lib: PathBuf = exe
        .ancestors()
        .nth(2)
        .expect("target/<profile>")
        .join("librefit_onnxruntime.so");
    let ort = EngineSpec::Plugin(lib);
    let reference = EngineSpec::Reference;
    let dir = tempfile::tempdir().map_err(|error| refit_harness::Error::Io {
        op: "create",
        path: std::env::temp_dir(),
        error,
    })?;
    let models = fixtures::write_all(dir.path())?;
    let options = BuildOptions::default();

    println!("| | ONNX Runtime | reference | ratio |\n|---|---:|---:|---:|");
    for path in models
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
    {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let o = match ort.open(path, &options) {
            Ok(e) => e,
            Err(e) if e.is_unsupported() => {
                println!("| inference, {name} | refused | | |");
                continue;
            }
            Err(e) => return Err(e),
        };
        let r = reference.open(path, &options)?;
        let x = inputs(r.as_ref());
        let (mut co, mut cr) = (o.context()?, r.context()?);
        let (mut yo, mut yr) = (Vec::new(), Vec::new());
        let (to, tr) = time_pair(
            SAMPLES,
            SAMPLE,
            || co.infer_into(&x, &mut yo).expect("infer"),
            || cr.infer_into(&x, &mut yr).expect("infer"),
        );
        println!(
            "| inference, {name} | {} | {} | {:.3} |",
            human(to.median),
            human(tr.median),
            to.median / tr.median
        );
    }

    let wide = dir.path().join("conv_wide.onnx");
    let mut refit = Vec::new();
    for spec in [&ort, &reference] {
        let e = spec.open(&wide, &options)?;
        let sets = [all_at(e.as_ref(), 1.0), all_at(e.as_ref(), 2.0)];
        let mut k = 0;
        let rf = time(SAMPLES, SAMPLE, || {
            k += 1;
            let set = &sets[k % 2];
            refit_all(e.as_ref(), set.iter().map(|(n, t)| (n.as_str(), t))).expect("refit");
        });
        // A reload writes the model with the new weights, then builds an
        // engine on it (as `bench`'s refit_vs_reload does).
        let (bytes, path) = (
            reload_model(&wide),
            dir.path().join("conv_wide_reload.onnx"),
        );
        let rl = time(SAMPLES, SAMPLE, || {
            std::fs::write(&path, &bytes).expect("write");
            drop(spec.open(&path, &options).expect("reload"));
        });
        refit.push((rf.median, rl.median));
    }
    let ((of, ol), (rf, rl)) = (refit[0], refit[1]);
    println!(
        "| refit of every weight of conv_wide | {} | {} | {:.1} |",
        human(of),
        human(rf),
        of / rf
    );
    println!(
        "| reload with those weights | {} | {} | {:.1} |",
        human(ol),
        human(rl),
        ol / rl
    );
    println!("| refit / reload | {:.3} | {:.3} | |", of / ol, rf / rl);
    Ok(())
}

/// conv_wide's bytes with every weight at 2.0.
fn reload_model(wide: &Path) -> Vec<u8> {
    let bytes = std::fs::read(wide).expect("read conv_wide");
    let inits = refit_harness::model::read_initializers(wide).expect("initializers");
    let twos: Vec<Vec<f32>> = inits.iter().map(|i| vec![2.0; i.values.len()]).collect();
    refit_harness::model::onnx::replace_initializers(&bytes, &|name| {
        let i = inits.iter().position(|t| t.info.name == name)?;
        Some(twos[i].as_slice())
    })
    .expect("write the weights in")
}
