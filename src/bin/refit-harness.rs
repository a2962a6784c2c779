//! The `refit-harness` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use refit_harness::engine::reference::ReferenceEngine;
use refit_harness::engine::{BuildOptions, Engine, EngineSpec};
use refit_harness::{demo, fixtures, io};

/// Proves an inference engine's weight refit is correct.
#[derive(Parser)]
#[command(name = "refit-harness", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List a model's refittable weights: name, dtype, shape.
    Weights {
        /// The ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// The engine: `reference`.
        #[arg(long, default_value = "reference")]
        engine: String,
    },
    /// Load a model, apply each weight file as one refit in order, infer.
    Infer {
        /// The ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// A `.safetensors` weight set keyed by initializer name; repeat to
        /// refit several times, in order.
        #[arg(long)]
        weights: Vec<PathBuf>,
        /// The input, `.npy`.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the output, `.npy`.
        #[arg(long)]
        output: PathBuf,
        /// The engine: `reference`.
        #[arg(long, default_value = "reference")]
        engine: String,
    },
    /// Write the seed model, the conv fixtures and the seed's tensor files.
    GenModel {
        /// The folder to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// The vendor's refit demos on the reference engine.
    Demo {
        #[command(subcommand)]
        which: DemoCommand,
    },
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Infer (0), refit the kernel to all ones, infer again (9).
    SingleThread,
    /// One thread infers in a loop while another refits all-0 .. all-9.
    MultiThread {
        /// Milliseconds between refits.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

fn open(engine: &str, model: &std::path::Path) -> anyhow::Result<Box<dyn Engine>> {
    let spec: EngineSpec = engine.parse()?;
    Ok(spec.open(model, &BuildOptions::default())?)
}

fn seed_engine() -> anyhow::Result<ReferenceEngine> {
    let bytes = fixtures::seed_model().to_bytes();
    Ok(ReferenceEngine::from_bytes(
        &bytes,
        "seed_conv.onnx".as_ref(),
        &BuildOptions::default(),
    )?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = &mut std::io::stdout();
    match cli.command {
        Command::Weights { model, engine } => {
            let engine = open(&engine, &model)?;
            for w in engine.weights() {
                println!("{}\t{}\t{}", w.name, w.dtype, w.shape_text());
            }
        }
        Command::Infer {
            model,
            weights,
            input,
            output,
            engine,
        } => {
            let engine = open(&engine, &model)?;
            let x = io::read_npy(&input)?;
            for path in &weights {
                let set = io::read_weights(path)?;
                refit_harness::engine::refit_all(
                    engine.as_ref(),
                    set.iter().map(|(n, t)| (n.as_str(), t)),
                )
                .map_err(|e| e.in_file(path))?;
            }
            let mut ctx = engine.context()?;
            let y = ctx.infer(&[x]).map_err(|e| e.in_file(&input))?;
            let y = y
                .into_iter()
                .next()
                .context("the model produced no output")?;
            io::write_npy(&output, &y)?;
            println!("wrote {} ({} {:?})", output.display(), y.dtype(), y.shape);
        }
        Command::GenModel { out } => {
            for path in fixtures::write_all(&out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Demo { which } => {
            let engine = seed_engine()?;
            match which {
                DemoCommand::SingleThread => {
                    demo::single_thread(&engine, stdout)?;
                }
                DemoCommand::MultiThread { interval_ms } => {
                    demo::multi_thread(&engine, Duration::from_millis(interval_ms), stdout)?;
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
