//! Every matmul configuration the autotuner may pick computes the right thing: each
//! candidate tile configuration (and the subgroup kernel) is pinned in turn and run on
//! edge shapes, transposes and dtypes against an f64 reference. Its own test binary,
//! because pinning is process-wide.

mod common;
use common::*;
use openkern::autotune::{self, Choice, ShapeClass, CANDIDATES};
use openkern::ops::{self, Activation, MatmulKernel, MatmulOptions};
use openkern::DType;

/// x·Wᵀ + bias, SiLU, in f64 (A is [m, k] or its transpose, W is [n, k] or [k, n]).
#[allow(clippy::too_many_arguments)]
fn reference(
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut s = bias[j] as f64;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av as f64 * bv as f64;
            }
            out.push(s / (1.0 + (-s).exp()));
        }
    }
    out
}

#[test]
fn every_tunable_configuration() {
    let Some(device) = gpu() else { return };
    let choices: Vec<Choice> = CANDIDATES
        .iter()
        .map(|&t| Choice::Tiled(t))
        .chain([Choice::Subgroup])
        .filter(|&c| autotune::supports(&device, c))
        .collect();
    for choice in choices {
        for dtype in [DType::F32, DType::F16] {
            for class in ShapeClass::ALL {
                autotune::set_choice(&device, dtype, class, choice);
            }
        }
        for &(m, n, k) in &[(17, 65, 33), (130, 129, 70)] {
            for dtype in [DType::F32, DType::F16] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    if dtype == DType::F16 && (ta || !tb) {
                        continue; // f16: the linear layout only; f32 covers the transposes
                    }
                    let ash = if ta { [k, m] } else { [m, k] };
                    let bsh = if tb { [n, k] } else { [k, n] };
                    let a = quantize(&random(m * k, 1), dtype);
                    let b = quantize(&random(n * k, 2), dtype);
                    let bias = random(n, 3);
                    let opts = MatmulOptions {
                        trans_a: ta,
                        trans_b: tb,
                        out_dtype: Some(DType::F32),
                        bias: Some(tensor(&device, &bias, &[n], DType::F32)),
                        activation: Some(Activation::Silu),
                        kernel: match choice {
                            Choice::Tiled(_) => MatmulKernel::Tiled,
                            _ => MatmulKernel::Auto,
                        },
                    };
                    let got = ops::matmul_with(
                        &tensor(&device, &a, &ash, dtype),
                        &tensor(&device, &b, &bsh, dtype),
                        &opts,
                    )
                    .unwrap();
                    assert_close(
                        &format!("{choice} {m}x{n}x{k} {dtype} ta {ta} tb {tb}"),
                        &got.to_f32_vec().unwrap(),
                        &reference(&a, &b, &bias, m, n, k, ta, tb),
                        2.0 * k as f64 * DType::F32.epsilon() + 1e-6,
                        4.0 * DType::F32.epsilon(),
                    );
                }
            }
        }
    }
}
