//! Seeded property tests over the public API, as a new user would call it: random op,
//! shape (odd sizes, zero-size, ranks 1 to 4), dtype and options, run on every backend
//! present and compared with an f64 reference; and random invalid calls, which must be
//! typed errors that leave the device working.
//!
//! The default run is small (256 valid and 64 invalid calls per backend). With
//! `OPENKERN_TEST_LARGE=1` it makes 10,000 valid and 2,000 invalid calls. A failure
//! prints the call (op, shape, dtype, seed of its data) and proptest's seed, and
//! `PROPTEST_CASES` overrides the count.

mod common;
use common::*;
use openkern::{ops, DType, Device, Error, Tensor};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    AddRow,
    Exp,
    Neg,
    Abs,
    Tanh,
    Sigmoid,
    Relu,
    Silu,
    Softmax,
    LogSoftmax,
    RmsNorm,
    LayerNorm,
    Sum,
    Mean,
    Max,
    Min,
    ArgMax,
    SumDim,
    MaxDim,
    Matmul,
    Transpose,
    Cast,
}

const OPS: [Op; 26] = [
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::AddRow,
    Op::Exp,
    Op::Neg,
    Op::Abs,
    Op::Tanh,
    Op::Sigmoid,
    Op::Relu,
    Op::Silu,
    Op::Softmax,
    Op::LogSoftmax,
    Op::RmsNorm,
    Op::LayerNorm,
    Op::Sum,
    Op::Mean,
    Op::Max,
    Op::Min,
    Op::ArgMax,
    Op::SumDim,
    Op::MaxDim,
    Op::Matmul,
    Op::Transpose,
    Op::Cast,
];

#[derive(Debug, Clone)]
struct Call {
    op: Op,
    shape: Vec<usize>,
    dtype: DType,
    /// Seeds the data (and picks a dimension, a K, a target dtype).
    seed: u64,
}

fn call() -> impl Strategy<Value = Call> {
    let dims = prop_oneof![3 => 1usize..10, 1 => Just(0usize), 1 => 10usize..70];
    (
        0..OPS.len(),
        prop::collection::vec(dims, 1..=4),
        0..3usize,
        any::<u64>(),
    )
        .prop_map(|(op, shape, d, seed)| Call {
            op: OPS[op],
            shape,
            dtype: [DType::F32, DType::F16, DType::BF16][d],
            seed,
        })
}

fn cases(default: u32, large: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if common::large() { large } else { default })
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Relative tolerance of one rounding to `dtype`, with room for f32 sums.
fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 2e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Rows of the last dimension mapped by `f`.
fn rows(x: &[f64], n: usize, f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    if n == 0 {
        return vec![];
    }
    x.chunks(n).flat_map(f).collect()
}

/// Reduces dimension `dim` of `shape` with `f`.
fn reduce_dim(x: &[f64], shape: &[usize], dim: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    let n = shape[dim];
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let col: Vec<f64> = (0..n).map(|j| x[(o * n + j) * inner + i]).collect();
            out.push(f(&col));
        }
    }
    out
}

fn max_of(r: &[f64]) -> f64 {
    if r.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    r.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
}

/// Runs `c` on `device`, checks it against the f64 reference. Zero-size shapes must give
/// empty results (or the op's typed error for an empty reduced dimension).
fn check_call(device: &Device, c: &Call) -> Result<(), TestCaseError> {
    let shape = &c.shape;
    let count: usize = shape.iter().product();
    let last = *shape.last().unwrap();
    let what = format!("{c:?} on {device:?}");
    let x = quantize(&random(count, c.seed), c.dtype);
    let y = quantize(&random(count, c.seed ^ 0x9e37), c.dtype);
    let t = tensor(device, &x, shape, c.dtype);
    let u = tensor(device, &y, shape, c.dtype);
    let (xd, yd) = (f64s(&x), f64s(&y));
    let dim = (c.seed % shape.len() as u64) as usize;
    // (result, reference); None where an empty reduced dimension must be an error
    let (got, want): (openkern::Result<Tensor>, Option<Vec<f64>>) = match c.op {
        Op::Add => (
            ops::add(&t, &u),
            Some(xd.iter().zip(&yd).map(|(a, b)| a + b).collect()),
        ),
        Op::Sub => (
            ops::sub(&t, &u),
            Some(xd.iter().zip(&yd).map(|(a, b)| a - b).collect()),
        ),
        Op::Mul => (
            ops::mul(&t, &u),
            Some(xd.iter().zip(&yd).map(|(a, b)| a * b).collect()),
        ),
        Op::Div => {
            // divisors kept away from 0
            let d: Vec<f32> = quantize(
                &y.iter().map(|v| v.abs() + 0.5).collect::<Vec<_>>(),
                c.dtype,
            );
            let dt = tensor(device, &d, shape, c.dtype);
            (
                ops::div(&t, &dt),
                Some(xd.iter().zip(&d).map(|(a, &b)| a / b as f64).collect()),
            )
        }
        Op::AddRow => {
            let r = quantize(&random(last, c.seed ^ 7), c.dtype);
            let rt = tensor(device, &r, &[last], c.dtype);
            let want = (0..count)
                .map(|i| xd[i] + r[i % last.max(1)] as f64)
                .collect();
            (ops::add(&t, &rt), Some(want))
        }
        Op::Exp => (ops::exp(&t), Some(xd.iter().map(|v| v.exp()).collect())),
        Op::Neg => (ops::neg(&t), Some(xd.iter().map(|v| -v).collect())),
        Op::Abs => (ops::abs(&t), Some(xd.iter().map(|v| v.abs()).collect())),
        Op::Tanh => (ops::tanh(&t), Some(xd.iter().map(|v| v.tanh()).collect())),
        Op::Sigmoid => (
            ops::sigmoid(&t),
            Some(xd.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()),
        ),
        Op::Relu => (ops::relu(&t), Some(xd.iter().map(|v| v.max(0.0)).collect())),
        Op::Silu => (
            ops::silu(&t),
            Some(xd.iter().map(|v| v / (1.0 + (-v).exp())).collect()),
        ),
        Op::Softmax | Op::LogSoftmax => {
            let log = c.op == Op::LogSoftmax;
            let want = rows(&xd, last, |r| {
                let m = max_of(r);
                let z: f64 = r.iter().map(|v| (v - m).exp()).sum();
                r.iter()
                    .map(|v| {
                        if log {
                            v - m - z.ln()
                        } else {
                            (v - m).exp() / z
                        }
                    })
                    .collect()
            });
            (
                if log {
                    ops::log_softmax(&t)
                } else {
                    ops::softmax(&t)
                },
                Some(want),
            )
        }
        Op::RmsNorm | Op::LayerNorm => {
            let w = quantize(
                &random(last, c.seed ^ 3)
                    .iter()
                    .map(|v| v + 1.0)
                    .collect::<Vec<_>>(),
                c.dtype,
            );
            let b = quantize(&random(last, c.seed ^ 5), c.dtype);
            let wt = tensor(device, &w, &[last], c.dtype);
            let bt = tensor(device, &b, &[last], c.dtype);
            let layer = c.op == Op::LayerNorm;
            let want = rows(&xd, last, |r| {
                let n = r.len() as f64;
                let mean = if layer {
                    r.iter().sum::<f64>() / n
                } else {
                    0.0
                };
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let s = (var + 1e-5).sqrt();
                r.iter()
                    .enumerate()
                    .map(|(j, v)| {
                        (v - mean) / s * w[j] as f64 + if layer { b[j] as f64 } else { 0.0 }
                    })
                    .collect()
            });
            let got = if layer {
                ops::layer_norm(&t, &wt, &bt, 1e-5)
            } else {
                ops::rms_norm(&t, &wt, 1e-5)
            };
            // an empty last dimension has nothing to normalise: a typed error
            (got, (last > 0).then_some(want))
        }
        Op::Sum | Op::Mean | Op::Max | Op::Min | Op::ArgMax => {
            let f = |r: &[f64]| -> f64 {
                match c.op {
                    Op::Sum => r.iter().sum(),
                    Op::Mean => r.iter().sum::<f64>() / r.len() as f64,
                    Op::Max => max_of(r),
                    Op::Min => -max_of(&r.iter().map(|v| -v).collect::<Vec<_>>()),
                    _ => {
                        let m = max_of(r);
                        r.iter().position(|&v| v == m).unwrap() as f64
                    }
                }
            };
            // reducing an empty dimension is a typed error for every reduction
            let defined = last > 0;
            let want = defined.then(|| reduce_dim(&xd, shape, shape.len() - 1, f));
            let got = match c.op {
                Op::Sum => ops::sum(&t),
                Op::Mean => ops::mean(&t),
                Op::Max => ops::max(&t),
                Op::Min => ops::min(&t),
                _ => ops::argmax(&t),
            };
            (got, want)
        }
        Op::SumDim => (
            ops::sum_dim(&t, dim, true),
            (shape[dim] > 0).then(|| reduce_dim(&xd, shape, dim, |r| r.iter().sum())),
        ),
        Op::MaxDim => (
            ops::max_dim(&t, dim, false),
            (shape[dim] > 0).then(|| reduce_dim(&xd, shape, dim, max_of)),
        ),
        Op::Matmul => {
            // [.., m, k] x [k, n], n from the seed; a vector is one row
            let k = last;
            let n = 1 + (c.seed >> 8) as usize % 19;
            let b = quantize(&random(k * n, c.seed ^ 11), c.dtype);
            let bt = tensor(device, &b, &[k, n], c.dtype);
            let lead: usize = shape[..shape.len() - 1].iter().product();
            let mut want = vec![0.0; lead * n];
            for r in 0..lead {
                for j in 0..n {
                    want[r * n + j] = (0..k).map(|i| xd[r * k + i] * b[i * n + j] as f64).sum();
                }
            }
            let a = if shape.len() == 1 {
                t.reshape(&[1, k]).unwrap()
            } else {
                t.clone()
            };
            (ops::matmul(&a, &bt), Some(want))
        }
        Op::Transpose => {
            let r = shape.len();
            if r < 2 {
                return Ok(());
            }
            let (a, b) = (dim.min(r - 2), r - 1);
            let mut out_shape = shape.clone();
            out_shape.swap(a, b);
            let strides: Vec<usize> = (0..r).map(|i| shape[i + 1..].iter().product()).collect();
            let mut want = vec![0.0; count];
            for (o, w) in want.iter_mut().enumerate() {
                let mut rem = o;
                let mut src = 0;
                for i in (0..r).rev() {
                    let idx = rem % out_shape[i];
                    rem /= out_shape[i];
                    let from = if i == a {
                        b
                    } else if i == b {
                        a
                    } else {
                        i
                    };
                    src += idx * strides[from];
                }
                *w = xd[src];
            }
            (ops::transpose(&t, a, b), Some(want))
        }
        Op::Cast => {
            let to = [DType::F32, DType::F16, DType::BF16][(c.seed % 3) as usize];
            let want = f64s(&quantize(&x, to));
            (t.cast(to), Some(want))
        }
    };
    match (got, want) {
        (Ok(out), Some(want)) => {
            let got = out
                .to_f32_vec()
                .map_err(|e| TestCaseError::fail(format!("{what}: read: {e}")))?;
            prop_assert_eq!(got.len(), want.len(), "{}", what);
            let rtol = tol(c.dtype)
                * if matches!(c.op, Op::Exp | Op::Matmul | Op::Div) {
                    2.0
                } else {
                    1.0
                };
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let ok =
                    (g as f64 - w).abs() <= rtol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan());
                prop_assert!(ok, "{}: element {} is {}, want {}", what, i, g, w);
            }
        }
        (Err(e), None) => prop_assert!(
            !matches!(e, Error::Internal { .. }),
            "{}: an internal error where a typed one was due: {}",
            what,
            e
        ),
        (Ok(out), None) => prop_assert!(false, "{}: an empty reduction gave {:?}", what, out),
        (Err(e), Some(_)) => prop_assert!(false, "{}: unexpected error {}", what, e),
    }
    Ok(())
}

fn valid_calls_agree_with_f64(device: &Device) {
    let mut r = runner(cases(256, 10_000));
    r.run(&call(), |c| check_call(device, &c))
        .unwrap_or_else(|e| panic!("{e}"));
}
backend_tests!(valid_calls_agree_with_f64 => valid_calls_agree_with_f64_cpu, valid_calls_agree_with_f64_gpu, valid_calls_agree_with_f64_gpu_nosubgroups);

/// One invalid call per kind; each must be a typed error.
fn invalid_call(device: &Device, kind: usize, seed: u64) -> openkern::Result<Tensor> {
    let f = |shape: &[usize]| {
        let n = shape.iter().product();
        tensor(device, &random(n, seed), shape, DType::F32)
    };
    let ids = Tensor::from_slice(device, &[1u32, 2], &[2]).unwrap();
    let a = 1 + (seed % 7) as usize;
    match kind {
        0 => ops::matmul(&f(&[a, 3]), &f(&[4, a])),
        1 => ops::add(&f(&[a, 3]), &f(&[a, 4])),
        2 => ops::softmax(&ids),
        3 => ops::rms_norm(&f(&[a, 5]), &f(&[4]), 1e-5),
        4 => ops::rms_norm(&f(&[a, 5]), &f(&[5]), f32::NAN),
        5 => ops::sum_dim(&f(&[a, 5]), 2, false),
        6 => ops::permute(&f(&[a, 5]), &[0, 0]),
        7 => f(&[a, 5]).reshape(&[a, 6]),
        8 => ops::embedding(&f(&[2]), &f(&[3, 4])),
        9 => f(&[a]).cast(DType::U32),
        10 => Tensor::from_slice(device, &[1.0f32; 5], &[a, 6]),
        11 => ops::rope(&f(&[1, 2, 5]), &ops::RopeOptions::default()),
        12 => ops::add(&f(&[a]), &f(&[a]).cast(DType::F16).unwrap()),
        13 => ops::transpose(&f(&[a, 5]), 0, 3),
        14 => Tensor::zeros(device, &[usize::MAX / 2, 3], DType::F32),
        15 => ops::layer_norm(&f(&[a, 0]), &f(&[0]), &f(&[0]), 1e-5),
        _ => ops::clamp(&f(&[a]), 2.0, 1.0),
    }
}

fn invalid_calls_are_typed_errors(device: &Device) {
    let mut r = runner(cases(64, 2_000));
    r.run(&(0..17usize, any::<u64>()), |(kind, seed)| {
        match invalid_call(device, kind, seed) {
            Ok(t) => prop_assert!(false, "invalid call {kind} (seed {seed}) gave {t:?}"),
            Err(e) => prop_assert!(
                !matches!(e, Error::Internal { .. }) && !e.to_string().is_empty(),
                "invalid call {kind}: {e}"
            ),
        }
        // the device still computes
        let x = Tensor::from_slice(device, &[1.0f32, 2.0, 3.5], &[3]).unwrap();
        let s = ops::sum(&x).and_then(|s| s.to_vec::<f32>());
        prop_assert_eq!(
            s.ok(),
            Some(vec![6.5]),
            "device broken after invalid call {}",
            kind
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
backend_tests!(invalid_calls_are_typed_errors => invalid_calls_are_typed_errors_cpu, invalid_calls_are_typed_errors_gpu);
