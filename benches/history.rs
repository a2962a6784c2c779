//! The history checker on a million operations: 8 inference threads and one
//! refit thread, as a stress run records them. Baseline: sorting the same
//! number of timestamps, the least any checker must do.

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use refit_harness::history::{check, History, Read, Write};
use std::hint::black_box;

/// A valid history of `ops` operations: a refit every 100 inferences.
fn synthetic(ops: usize) -> History {
    let mut h = History::default();
    let mut t = 1_000u64;
    let mut version = 0u64;
    let mut x = 0x2545F4914F6CDD1Du64;
    for i in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += 50 + x % 100;
        if i % 100 == 99 {
            version += 1;
            h.writes.push(Write {
                thread: 99,
                start: t,
                end: t + 400,
                version,
            });
            t += 450;
        } else {
            let thread = (x % 8) as u32;
            h.reads.push(Read {
                thread,
                start: t,
                end: t + 30,
                value: Some(version),
            });
        }
    }
    h
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("history");
    let n = 1_000_000;
    let h = synthetic(n);
    assert_eq!(
        check(&h, false, 3).total(),
        0,
        "the synthetic history is valid"
    );
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("check/1M_ops", |b| {
        b.iter(|| black_box(check(black_box(&h), false, 3)))
    });
    let starts: Vec<u64> = h.reads.iter().map(|r| r.start ^ 0x5555).collect();
    g.bench_function("baseline_sort/1M_ops", |b| {
        b.iter_batched(
            || starts.clone(),
            |mut v| {
                v.sort_unstable();
                v
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
