//! The loaders fuzzed with proptest over mutated valid files (bit flips,
//! truncation, inserted bytes, forged little-endian size fields): no panic,
//! no hang, and no allocation sized by a forged field (one would abort the
//! process or take its memory, failing the run).

use proptest::prelude::*;

use refit_harness::engine::reference::ReferenceEngine;
use refit_harness::engine::{BuildOptions, Engine};
use refit_harness::{io, Tensor};

use crate::common::fixture;

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Overwrites 8 bytes with a large little-endian number.
    Forge(usize, u64),
    /// Overwrites one byte with a varint continuation (protobuf lengths).
    Varint(usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(u64::MAX), Just(1 << 40), Just(1 << 32), 0u64..u64::MAX]
        )
            .prop_map(|(i, v)| Mutation::Forge(i, v)),
        any::<usize>().prop_map(Mutation::Varint),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match m {
            Mutation::Flip(i, x) => b[i % n] ^= x,
            Mutation::Truncate(i) => b.truncate(i % n),
            Mutation::Insert(i, bytes) => {
                let at = i % n;
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Forge(i, v) => {
                let at = i % n;
                for (k, byte) in v.to_le_bytes().iter().enumerate() {
                    if at + k < n {
                        b[at + k] = *byte;
                    }
                }
            }
            Mutation::Varint(i) => b[i % n] |= 0x80,
        }
    }
    b
}

fn write_tmp(bytes: &[u8], ext: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("fuzz.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(refit_harness::check::cases_from_env(256)))]

    #[test]
    fn onnx_loader_survives_mutations(
        file in prop::sample::select(vec!["seed_conv.onnx", "conv_stack.onnx", "conv1d.onnx", "pytorch/stack_dynamo.onnx", "pytorch/conv1d_torchscript.onnx"]),
        muts in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let bytes = mutate(std::fs::read(fixture(file)).unwrap(), &muts);
        if let Ok(engine) = ReferenceEngine::from_bytes(&bytes, "fuzz.onnx".as_ref(), &BuildOptions::default()) {
            // A model that loads must infer or refuse cleanly on its own
            // declared input, when that is of a sane size.
            let inputs: Option<Vec<Tensor>> = engine
                .inputs()
                .iter()
                .map(|i| i.static_shape().filter(|s| s.iter().product::<usize>() < 1 << 20).map(|s| Tensor::full(s, 1.0)))
                .collect();
            if let Some(inputs) = inputs {
                let _ = engine.context().unwrap().infer(&inputs);
            }
        }
    }

    #[test]
    fn safetensors_loader_survives_mutations(
        file in prop::sample::select(vec!["seed_ones.safetensors", "pytorch/stack_refit.safetensors"]),
        muts in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let (_dir, path) = write_tmp(&mutate(std::fs::read(fixture(file)).unwrap(), &muts), "safetensors");
        match io::read_weights(&path) {
            Ok(set) => {
                for (_, t) in set {
                    prop_assert!(t.data.len() < 1 << 24);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.contains("fuzz.safetensors"), "{}", msg);
            }
        }
    }

    #[test]
    fn npy_loader_survives_mutations(
        file in prop::sample::select(vec!["seed_input.npy", "pytorch/stack_input.npy"]),
        muts in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let (_dir, path) = write_tmp(&mutate(std::fs::read(fixture(file)).unwrap(), &muts), "npy");
        match io::read_npy(&path) {
            Ok(t) => prop_assert!(t.data.len() < 1 << 24),
            // A user error is one line, naming the file.
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.contains("fuzz.npy"), "{}", msg);
            }
        }
    }
}

#[test]
fn forged_sizes_are_refused_before_allocating() {
    // A .npy header claiming 2^40 float32 values in a tiny file.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let hlen = (header.len() + pad + 1) as u16;
    b.extend(hlen.to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(std::iter::repeat_n(b' ', pad));
    b.push(b'\n');
    b.extend([0u8; 16]);
    let (_dir, path) = write_tmp(&b, "npy");
    let msg = io::read_npy(&path).unwrap_err().to_string();
    assert!(msg.contains("needs more data than the file's"), "{msg}");

    // A safetensors header whose length field claims 2^60 bytes.
    let mut s = (1u64 << 60).to_le_bytes().to_vec();
    s.extend(b"{}");
    let (_dir2, path) = write_tmp(&s, "safetensors");
    assert!(io::read_weights(&path).is_err());

    // An ONNX input dimension beyond the engine's limits.
    let mut proto = refit_harness::fixtures::seed_model().to_proto();
    let g = proto.graph.as_mut().unwrap();
    let dims = &mut g.input[0]
        .r#type
        .as_mut()
        .unwrap()
        .tensor_type
        .as_mut()
        .unwrap()
        .shape
        .as_mut()
        .unwrap()
        .dim;
    dims[2].dim_value = Some(1 << 40);
    use prost::Message;
    let engine = ReferenceEngine::from_bytes(
        &proto.encode_to_vec(),
        "big.onnx".as_ref(),
        &BuildOptions::default(),
    )
    .unwrap();
    // The dimension is treated as unknown; a real input is checked at infer.
    assert_eq!(engine.inputs()[0].shape[2], None);
}
