//! The pipeline cache: a kernel variant is built once, repeated calls build nothing (no
//! pipeline, no shader module, and on lavapipe no JIT code), and the cache is bounded.
//!
//! Each test opens its own GPU device so its counters see only its own calls.

mod common;
use common::*;
use openkern::{ops, DType, Device, Tensor};

/// A fresh GPU device (its own counters), or `None` where the machine has no adapter.
/// Callers hold [`counters_lock`]: `no_op_compiles_code_per_call` counts the whole
/// process's JIT mappings, so no other test of this binary may compile meanwhile.
fn fresh_gpu() -> Option<Device> {
    gpu()?;
    Some(Device::gpu().expect("the adapter gpu() opened opens again"))
}

/// Executable anonymous mappings of this process: where JIT compilers (lavapipe's LLVM)
/// put compiled shader code. `None` off Linux.
fn jit_mappings() -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(
        maps.lines()
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 5 && f[1].contains('x')
            })
            .count(),
    )
}

#[test]
fn identical_calls_build_one_pipeline() {
    let _serial = counters_lock();
    let Some(d) = fresh_gpu() else { return };
    let x = tensor(&d, &random(4 * 114, 1), &[4, 114], DType::F32);
    let before = d.stats();
    assert_eq!(
        (before.pipelines_built, before.shader_modules_created),
        (0, 0)
    );
    for _ in 0..1000 {
        ops::softmax(&x).unwrap();
    }
    d.sync().unwrap();
    let s = d.stats();
    assert_eq!(s.pipelines_built, 1, "{s:?}");
    assert_eq!(s.shader_modules_created, 1, "{s:?}");
    assert_eq!(s.pipeline_cache_hits, 999, "{s:?}");
    assert_eq!(s.live_pipelines, 1, "{s:?}");
    assert_eq!(s.pipeline_evictions, 0, "{s:?}");

    // Other row lengths in the same workgroup bucket (33..=512 elements: 64 lanes) use
    // the same pipeline: shapes are params, never part of the key.
    for n in [33, 63, 100, 257, 511, 512] {
        let x = tensor(&d, &random(3 * n, n as u64), &[3, n], DType::F32);
        let y = ops::softmax(&x).unwrap().to_vec::<f32>().unwrap();
        assert!((y[..n].iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let s = d.stats();
    assert_eq!(
        (s.pipelines_built, s.shader_modules_created),
        (1, 1),
        "{s:?}"
    );
}

/// Mesa lavapipe specialises a pipeline on the values in its uniform buffer and, in
/// Mesa 22, compiles a new copy on every bind when that pays (softmax: 2,000 calls left
/// ~960 executable mappings and +600 MiB). openkern binds those kernels' params as
/// storage there (`LAVAPIPE_RESPECIALISED`); this runs every op family repeatedly and
/// fails if any kernel still compiles per call, so that list stays complete.
#[test]
fn no_op_compiles_code_per_call() {
    let _serial = counters_lock();
    let Some(d) = fresh_gpu() else { return };
    if jit_mappings().is_none() {
        eprintln!("no /proc/self/maps: skipped");
        return;
    }
    let causal = ops::SoftmaxOptions {
        causal: true,
        ..Default::default()
    };
    let mut leaks = Vec::new();
    let mut worst = 0;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for n in [5usize, 114, 1000] {
            let x = tensor(&d, &random(4 * n, 7), &[4, n], dtype);
            let w = tensor(&d, &random(n, 8), &[n], dtype);
            let m = tensor(&d, &random(n * 8, 9), &[n, 8], dtype);
            let x20 = tensor(&d, &random(20 * n, 10), &[20, n], dtype);
            let m40 = tensor(&d, &random(n * 40, 11), &[n, 40], dtype);
            let ids = Tensor::from_slice(&d, &[0u32, 3, 1, 2], &[4]).unwrap();
            let q = tensor(&d, &random(2 * 3 * 16 * 32, 12), &[2, 3, 16, 32], dtype);
            type Op<'a> = Box<dyn Fn() -> openkern::Result<Tensor> + 'a>;
            let all: Vec<(&str, Op)> = vec![
                ("softmax", Box::new(|| ops::softmax(&x))),
                ("log_softmax", Box::new(|| ops::log_softmax(&x))),
                (
                    "causal softmax",
                    Box::new(|| ops::softmax_with(&x, &causal)),
                ),
                ("rms_norm", Box::new(|| ops::rms_norm(&x, &w, 1e-5))),
                ("layer_norm", Box::new(|| ops::layer_norm(&x, &w, &w, 1e-5))),
                ("add", Box::new(|| ops::add(&x, &w))),
                ("sum", Box::new(|| ops::sum(&x))),
                ("max", Box::new(|| ops::max(&x))),
                ("argmax", Box::new(|| ops::argmax(&x))),
                ("gelu", Box::new(|| ops::gelu(&x))),
                ("exp", Box::new(|| ops::exp(&x))),
                ("cast", Box::new(|| x.cast(DType::F32))),
                ("transpose", Box::new(|| ops::transpose(&x, 0, 1))),
                ("embedding", Box::new(|| ops::embedding(&ids, &x))),
                ("gemv", Box::new(|| ops::matmul(&x, &m))),
                ("matmul", Box::new(|| ops::matmul(&x20, &m40))),
                (
                    "attention",
                    Box::new(|| ops::attention(&q, &q, &q, &Default::default())),
                ),
            ];
            for (name, op) in &all {
                op().unwrap();
                d.sync().unwrap();
                let built = d.stats().pipelines_built;
                let before = jit_mappings().unwrap();
                for _ in 0..30 {
                    op().unwrap();
                }
                d.sync().unwrap();
                let grew = jit_mappings().unwrap().saturating_sub(before);
                worst = worst.max(grew);
                assert_eq!(d.stats().pipelines_built, built, "{name} built again");
                // 30 calls compiling each add about 30
                if grew > 10 {
                    leaks.push(format!(
                        "{name} {dtype:?} n={n}: +{grew} executable mappings over 30 calls"
                    ));
                }
            }
        }
    }
    eprintln!("most executable mappings added by 30 calls of one op: {worst}");
    assert!(
        leaks.is_empty(),
        "the driver compiles per call (add the kernel to LAVAPIPE_RESPECIALISED):\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_cache_evicts_the_least_recently_used_past_its_capacity() {
    let _serial = counters_lock();
    let Some(d) = fresh_gpu() else { return };
    assert_eq!(
        d.stats().pipeline_capacity,
        openkern::gpu::DEFAULT_PIPELINE_CAPACITY as u64
    );
    d.set_pipeline_cache_capacity(2);
    let xs = random(2 * 40, 3);
    let x = tensor(&d, &xs, &[2, 40], DType::F32);
    let soft = || ops::softmax(&x).unwrap().to_vec::<f32>().unwrap();
    let logsoft = || ops::log_softmax(&x).unwrap().to_vec::<f32>().unwrap();
    let sum = || ops::sum(&x).unwrap().to_vec::<f32>().unwrap();
    let want = soft();
    logsoft();
    let s = d.stats();
    assert_eq!(
        (s.pipelines_built, s.live_pipelines, s.pipeline_evictions),
        (2, 2, 0)
    );
    soft(); // softmax is now the most recent; log_softmax the least
    sum(); // a third variant evicts log_softmax
    let s = d.stats();
    assert_eq!(
        (s.pipelines_built, s.live_pipelines, s.pipeline_evictions),
        (3, 2, 1),
        "{s:?}"
    );
    assert_eq!(
        soft(),
        want,
        "softmax stayed cached and still computes the same"
    );
    assert_eq!(d.stats().pipelines_built, 3, "softmax was not evicted");
    logsoft(); // rebuilt after its eviction
    let s = d.stats();
    assert_eq!(
        (s.pipelines_built, s.live_pipelines, s.pipeline_evictions),
        (4, 2, 2),
        "{s:?}"
    );
    // Shrinking evicts at once; a capacity of 0 means 1.
    d.set_pipeline_cache_capacity(0);
    let s = d.stats();
    assert_eq!(
        (s.live_pipelines, s.pipeline_capacity, s.pipeline_evictions),
        (1, 1, 3)
    );
}

#[test]
fn cpu_device_stats_are_zero() {
    let d = Device::cpu();
    let x = Tensor::from_slice(&d, &[1.0f32, 2.0], &[2]).unwrap();
    ops::softmax(&x).unwrap();
    assert_eq!(d.stats(), openkern::DeviceStats::default());
    d.set_pipeline_cache_capacity(1); // a no-op, not a panic
}

/// The number of pipeline variants the crate docs state, derived from the registered
/// kernels and the override axes their launchers vary. Adding a variant means updating
/// the docs (src/lib.rs) and this number; keying a pipeline on a shape fails every GPU
/// test in debug builds instead (`key_in_domain`).
#[test]
fn the_documented_variant_count_is_current() {
    let n = openkern::gpu::pipeline_variants();
    eprintln!("pipeline variants on one adapter: {n}");

    assert_eq!(
        n, DOCUMENTED_VARIANTS,
        "update src/lib.rs's docs and this number"
    );
    let docs = include_str!("../src/lib.rs");
    assert!(
        docs.contains(&format!("({} in all;", separated(n))),
        "src/lib.rs states another variant count than {n}"
    );
}

const DOCUMENTED_VARIANTS: usize = 99_197;

/// 12345 as "12,345".
fn separated(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
