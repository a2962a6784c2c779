//! The models and tensor files `refit-harness gen-model` writes. The copies
//! under `fixtures/` in the repository are exactly these bytes (a test
//! regenerates them and compares).

use std::path::{Path, PathBuf};

pub use crate::model::build::seed_model;
use crate::model::build::{self, ConvChain, ConvLayer, Graph, Random, ZeroBias};
use crate::model::conv::{AutoPad, ConvAttrs};
use crate::tensor::Tensor;
use crate::{io, Error, Result};

/// Integer-valued weights in -2..=2, different per `salt`, so results are
/// exact in f32 and every position matters.
pub fn pattern(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + salt * 13 + i / 5) % 5) as f32 - 2.0)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn layer(
    prefix: &str,
    c_in: usize,
    c_out: usize,
    kernel: &[usize],
    attrs: ConvAttrs,
    bias: bool,
    relu: bool,
    salt: usize,
) -> ConvLayer {
    let wlen = c_out * (c_in / attrs.group) * kernel.iter().product::<usize>();
    ConvLayer {
        weight_name: format!("{prefix}.weight"),
        bias_name: bias.then(|| format!("{prefix}.bias")),
        c_out,
        kernel: kernel.to_vec(),
        attrs,
        weight: pattern(wlen, salt),
        bias: if bias {
            pattern(c_out, salt + 1)
        } else {
            Vec::new()
        },
        relu,
    }
}

/// Three conv layers with bias and Relu, padding, a strided grouped conv and
/// a dilated `SAME_UPPER` conv: input 1x3x32x32.
pub fn conv_stack() -> ConvChain {
    ConvChain {
        input_name: "input".into(),
        input_shape: vec![1, 3, 32, 32],
        output_name: "output".into(),
        layers: vec![
            layer(
                "conv1",
                3,
                16,
                &[3, 3],
                ConvAttrs {
                    pads: vec![1, 1, 1, 1],
                    ..ConvAttrs::default()
                },
                true,
                true,
                1,
            ),
            layer(
                "conv2",
                16,
                16,
                &[3, 3],
                ConvAttrs {
                    group: 4,
                    strides: vec![2, 2],
                    pads: vec![1, 1, 1, 1],
                    ..ConvAttrs::default()
                },
                true,
                true,
                2,
            ),
            layer(
                "conv3",
                16,
                8,
                &[3, 3],
                ConvAttrs {
                    dilations: vec![2, 2],
                    auto_pad: AutoPad::SameUpper,
                    ..ConvAttrs::default()
                },
                false,
                false,
                3,
            ),
        ],
    }
}

/// A depthwise conv with a rectangular kernel, asymmetric pads, dilation
/// and a batch of 2: input 2x8x16x16.
pub fn conv_depthwise() -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![2, 8, 16, 16],
        output_name: "y".into(),
        layers: vec![layer(
            "dw",
            8,
            8,
            &[3, 5],
            ConvAttrs {
                group: 8,
                dilations: vec![1, 2],
                pads: vec![1, 2, 1, 3],
                kernel_shape: vec![3, 5],
                ..ConvAttrs::default()
            },
            true,
            false,
            4,
        )],
    }
}

/// A wide conv, 64 to 64 channels 3x3 on 1x64x32x32 (147 KiB of weights).
pub fn conv_wide() -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 64, 32, 32],
        output_name: "y".into(),
        layers: vec![layer(
            "conv",
            64,
            64,
            &[3, 3],
            ConvAttrs {
                pads: vec![1, 1, 1, 1],
                ..ConvAttrs::default()
            },
            true,
            true,
            5,
        )],
    }
}

/// A 1-D conv with stride and `SAME_LOWER`: input 1x4x50.
pub fn conv1d() -> ConvChain {
    ConvChain {
        input_name: "x".into(),
        input_shape: vec![1, 4, 50],
        output_name: "y".into(),
        layers: vec![layer(
            "conv",
            4,
            6,
            &[4],
            ConvAttrs {
                strides: vec![3],
                auto_pad: AutoPad::SameLower,
                ..ConvAttrs::default()
            },
            true,
            false,
            6,
        )],
    }
}

/// A residual CNN at toy size, the layers of ResNet-18 in miniature: a
/// 7x7 stride-2 stem with BatchNorm, Relu and max pooling, a basic block
/// of 4 channels, a strided basic block of 8 (with its 1x1 downsample),
/// global average pooling and a 5-way Linear head (Gemm, `transB = 1`)
/// whose bias is zero. Random float weights; input 1x3x16x16.
pub fn resnet_tiny() -> Graph {
    let (mut g, y) = build::resnet(ZeroBias(Random::new(18)), 16, &[4, 8], &[1, 1], 5);
    g.set_outputs(&[("logits", &y)]);
    g
}

/// A transformer block at toy size: single-head self-attention (query,
/// key and value projections, the scaled scores' Softmax, the output
/// projection, a residual Add), then an MLP of two projections with a
/// ReLU6 (Clip) between and a residual Add. Random float weights; input
/// 1x4x8 (batch, sequence, features).
pub fn attention_tiny() -> Graph {
    let mut g = Graph::new(Random::new(8));
    let x = g.input("x", &[1, 4, 8]);
    let q = g.project(&x, "attn.q", 8);
    let k = g.project(&x, "attn.k", 8);
    let v = g.project(&x, "attn.v", 8);
    let kt = g.transpose_last(&k);
    let s = g.matmul(&q, &kt);
    let s = g.scale(&s, 1.0 / 8f32.sqrt());
    let p = g.softmax(&s);
    let a = g.matmul(&p, &v);
    let o = g.project(&a, "attn.out", 8);
    let h = g.add(&x, &o);
    let m = g.project(&h, "mlp.fc1", 16);
    let m = g.clip(&m, 0.0, 6.0);
    let m = g.project(&m, "mlp.fc2", 8);
    let y = g.add(&h, &m);
    g.set_outputs(&[("y", &y)]);
    g
}

/// The seed model's file name: the model every engine must build (the
/// checks' preflight builds it before anything else).
pub const SEED_MODEL: &str = "seed_conv.onnx";

/// The models `gen-model` writes: file name and protobuf bytes.
pub fn models() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (SEED_MODEL, seed_model().to_bytes()),
        ("conv_stack.onnx", conv_stack().to_bytes()),
        ("conv_depthwise.onnx", conv_depthwise().to_bytes()),
        ("conv_wide.onnx", conv_wide().to_bytes()),
        ("conv1d.onnx", conv1d().to_bytes()),
        ("resnet_tiny.onnx", resnet_tiny().to_bytes()),
        ("attention_tiny.onnx", attention_tiny().to_bytes()),
    ]
}

/// Writes every model, plus the seed's input and weight files, into `dir`
/// (created if missing); returns the paths written.
///
/// - `seed_input.npy`: the all-ones 1x1x3x3 input;
/// - `seed_ones.safetensors`: `weight` all ones (the refit giving 9);
/// - `seed_ten_values.safetensors`: `weight` with ten values, the vendor
///   snippet's mistake, which a refit must refuse;
/// - `seed_int32.safetensors`: `weight` as INT32, as the snippet declared it.
///
/// # Errors
/// [`Error::Io`] when the folder or a file cannot be written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
        op: "create",
        path: dir.to_path_buf(),
        error,
    })?;
    let mut written = Vec::new();
    for (name, bytes) in models() {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|error| Error::Io {
            op: "write",
            path: path.clone(),
            error,
        })?;
        written.push(path);
    }
    let path = dir.join("seed_input.npy");
    io::write_npy(&path, &Tensor::full([1, 1, 3, 3], 1.0))?;
    written.push(path);
    let weights = [
        ("seed_ones.safetensors", Tensor::full([1, 1, 3, 3], 1.0)),
        ("seed_ten_values.safetensors", Tensor::full([10], 1.0)),
        (
            "seed_int32.safetensors",
            Tensor {
                shape: vec![1, 1, 3, 3],
                data: crate::TensorData::I32(vec![1; 9].into()),
            },
        ),
    ];
    for (name, t) in &weights {
        let path = dir.join(name);
        io::write_weights(&path, [("weight", t)])?;
        written.push(path);
    }
    Ok(written)
}

/// The repository's `fixtures/` folder.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
