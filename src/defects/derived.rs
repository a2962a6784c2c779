//! Defects of engines that derive tensors from the weights when they build:
//! the rewrites a real runtime's optimizer makes (BatchNorm folded into the
//! conv before it, Gemm weights pre-transposed, zero biases dropped, two
//! projections of one input fused), done here on the ONNX graph before the
//! reference engine builds it, and a refit path that forgets the
//! derivation. The engine still lists the model's own weights and accepts
//! every valid refit of them; what it then serves is stale or misplaced.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::model::onnx;
use crate::{Error, Result};

/// Which derivation the engine makes at build, and forgets at refit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Derivation {
    /// Every `Conv -> BatchNormalization` pair is folded into one conv
    /// (`W * scale / sqrt(var + eps)`, `(b - mean) * scale / sqrt(var +
    /// eps) + B`). A refit of the conv's weight or bias writes the raw
    /// values over the folded ones; a refit of a BatchNorm parameter is
    /// accepted and changes nothing.
    FoldsBatchNorm,
    /// Every `Gemm` with `transB = 1` gets its weight transposed once into
    /// a packed copy it computes with; a refit updates the raw tensor only.
    PacksGemm,
    /// A Conv or Gemm bias that is all zeros is dropped from the node; a
    /// later refit of it is accepted and does nothing.
    DropsZeroBias,
    /// Two MatMul projections of the same input with weights of one shape
    /// (query and key) are fused into one tensor; a refit writes each into
    /// the other's half.
    FusesProjections,
}

/// Where a refit of one of the model's weights goes in the rewritten
/// model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Accepted, then dropped: the engine no longer computes with it.
    Dropped,
    /// Into another weight of the rewritten model.
    Into(String),
}

fn set_f32(t: &mut onnx::TensorProto, v: &[f32]) {
    t.raw_data = Some(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    t.float_data.clear();
}

fn attr_i(n: &onnx::NodeProto, name: &str) -> Option<i64> {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.i)
}

fn op(n: &onnx::NodeProto) -> &str {
    n.op_type.as_deref().unwrap_or("")
}

/// How many node inputs read `name`.
fn readers(g: &onnx::GraphProto, name: &str) -> usize {
    g.node
        .iter()
        .flat_map(|n| &n.input)
        .filter(|i| *i == name)
        .count()
        + g.output
            .iter()
            .filter(|o| o.name.as_deref() == Some(name))
            .count()
}

fn init_index(g: &onnx::GraphProto, name: &str) -> Option<usize> {
    g.initializer
        .iter()
        .position(|t| t.name.as_deref() == Some(name))
}

/// Rewrites the model `bytes` (named `path` in errors) as the engine with
/// `d` builds it; returns the rewritten bytes and where each rewritten-away
/// weight's refits go.
///
/// # Errors
/// [`Error::MalformedModel`] for bytes that are not an ONNX model.
pub fn rewrite(
    d: Derivation,
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<u8>, HashMap<String, Route>)> {
    let mut proto = onnx::ModelProto::decode(bytes).map_err(|e| Error::MalformedModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut routes = HashMap::new();
    if let Some(g) = proto.graph.as_mut() {
        match d {
            Derivation::FoldsBatchNorm => fold_batch_norm(g, &mut routes),
            Derivation::PacksGemm => pack_gemm(g, &mut routes),
            Derivation::DropsZeroBias => drop_zero_bias(g, &mut routes),
            Derivation::FusesProjections => fuse_projections(g, &mut routes),
        }
    }
    Ok((proto.encode_to_vec(), routes))
}

fn fold_batch_norm(g: &mut onnx::GraphProto, routes: &mut HashMap<String, Route>) {
    let mut i = 0;
    while i < g.node.len() {
        let conv = &g.node[i];
        let fold = (|| {
            if op(conv) != "Conv" || conv.output.len() != 1 {
                return None;
            }
            let out = &conv.output[0];
            if readers(g, out) != 1 {
                return None;
            }
            let j = g
                .node
                .iter()
                .position(|n| op(n) == "BatchNormalization" && n.input.first() == Some(out))?;
            let bn = &g.node[j];
            let eps = g.node[j]
                .attribute
                .iter()
                .find(|a| a.name.as_deref() == Some("epsilon"))
                .and_then(|a| a.f)
                .unwrap_or(1e-5);
            let param = |k: usize| {
                let name = bn.input.get(k)?;
                g.initializer[init_index(g, name)?].f32_values()
            };
            let (scale, shift, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
            let w = init_index(g, conv.input.get(1)?)?;
            let wv = g.initializer[w].f32_values()?;
            let c = scale.len();
            if c == 0 || wv.len() % c != 0 || readers(g, conv.input.get(1)?) != 1 {
                return None;
            }
            let s: Vec<f32> = (0..c).map(|o| scale[o] / (var[o] + eps).sqrt()).collect();
            let per = wv.len() / c;
            let folded: Vec<f32> = wv.iter().enumerate().map(|(k, x)| x * s[k / per]).collect();
            let bias = match conv.input.get(2).and_then(|b| init_index(g, b)) {
                Some(b) => g.initializer[b].f32_values()?,
                None => vec![0.0; c],
            };
            let fb: Vec<f32> = (0..c)
                .map(|o| (bias[o] - mean[o]) * s[o] + shift[o])
                .collect();
            Some((j, w, folded, fb, bn.input[1..].to_vec(), bn.output.clone()))
        })();
        let Some((j, w, folded, fb, params, bn_out)) = fold else {
            i += 1;
            continue;
        };
        set_f32(&mut g.initializer[w], &folded);
        match g.node[i].input.get(2).and_then(|b| init_index(g, b)) {
            Some(b) => set_f32(&mut g.initializer[b], &fb),
            None => {
                let name = format!("{}.folded_bias", g.node[j].name.as_deref().unwrap_or("bn"));
                g.initializer.push(onnx::TensorProto {
                    dims: vec![fb.len() as i64],
                    data_type: Some(onnx::FLOAT),
                    name: Some(name.clone()),
                    ..Default::default()
                });
                let last = g.initializer.len() - 1;
                set_f32(&mut g.initializer[last], &fb);
                g.node[i].input.truncate(2);
                g.node[i].input.push(name);
            }
        }
        g.node[i].output = bn_out;
        g.node.remove(j);
        for p in params {
            if readers(g, &p) == 0 {
                if let Some(k) = init_index(g, &p) {
                    g.initializer.remove(k);
                    routes.insert(p, Route::Dropped);
                }
            }
        }
        if j < i {
            i -= 1;
        }
        i += 1;
    }
}

fn pack_gemm(g: &mut onnx::GraphProto, routes: &mut HashMap<String, Route>) {
    for i in 0..g.node.len() {
        let n = &g.node[i];
        if op(n) != "Gemm" || attr_i(n, "transB") != Some(1) {
            continue;
        }
        let Some(b) = n.input.get(1).cloned() else {
            continue;
        };
        let Some(k) = init_index(g, &b) else { continue };
        let t = &g.initializer[k];
        let (Some(v), &[rows, cols]) = (t.f32_values(), &t.dims[..]) else {
            continue;
        };
        if readers(g, &b) != 1 {
            continue;
        }
        let (r, c) = (rows as usize, cols as usize);
        let packed: Vec<f32> = (0..r * c).map(|p| v[(p % r) * c + p / r]).collect();
        let name = format!("{b}.packed");
        let mut t = onnx::TensorProto {
            dims: vec![cols, rows],
            data_type: Some(onnx::FLOAT),
            name: Some(name.clone()),
            ..Default::default()
        };
        set_f32(&mut t, &packed);
        g.initializer[k] = t;
        let n = &mut g.node[i];
        n.input[1] = name;
        n.attribute.retain(|a| a.name.as_deref() != Some("transB"));
        routes.insert(b, Route::Dropped);
    }
}

fn drop_zero_bias(g: &mut onnx::GraphProto, routes: &mut HashMap<String, Route>) {
    for i in 0..g.node.len() {
        let n = &g.node[i];
        if !matches!(op(n), "Conv" | "Gemm") || n.input.len() != 3 {
            continue;
        }
        let b = n.input[2].clone();
        let Some(k) = init_index(g, &b) else { continue };
        let zero = g.initializer[k]
            .f32_values()
            .is_some_and(|v| v.iter().all(|&x| x == 0.0));
        if !zero || readers(g, &b) != 1 {
            continue;
        }
        g.node[i].input.truncate(2);
        g.initializer.remove(k);
        routes.insert(b, Route::Dropped);
    }
}

fn fuse_projections(g: &mut onnx::GraphProto, routes: &mut HashMap<String, Route>) {
    let weight =
        |g: &onnx::GraphProto, n: &onnx::NodeProto| -> Option<(String, String, Vec<i64>)> {
            if op(n) != "MatMul" || n.input.len() != 2 {
                return None;
            }
            let k = init_index(g, &n.input[1])?;
            Some((
                n.input[0].clone(),
                n.input[1].clone(),
                g.initializer[k].dims.clone(),
            ))
        };
    let projections: Vec<_> = g.node.iter().filter_map(|n| weight(g, n)).collect();
    for (a, (x, q, dims)) in projections.iter().enumerate() {
        if routes.contains_key(q) {
            continue;
        }
        let partner = projections[a + 1..]
            .iter()
            .find(|(y, k, d)| y == x && d == dims && !routes.contains_key(k));
        if let Some((_, k, _)) = partner {
            routes.insert(q.clone(), Route::Into(k.clone()));
            routes.insert(k.clone(), Route::Into(q.clone()));
        }
    }
}
