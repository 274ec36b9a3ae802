//! matmul and linear against an f64 reference: every backend present, every dtype, every
//! transpose combination, shapes that are multiples of no tile (1, 3, 17, 63, 65, 127,
//! 257 in each of M, N, K), large K, broadcast batches, the fused epilogue, every GPU
//! kernel forced in turn, and the typed errors.
//!
//! Tolerances. Inputs are rounded to the dtype before the reference sees them, so the
//! products are exact and the only errors are f32 accumulation and the final rounding to
//! the output dtype:  |got − want| ≤ 2·K·ε_f32 (+1e-6 with an activation, whose
//! formulas are accurate to ~1e-7)  +  ε_out·|want|,  ε = unit roundoff.
//!
//! Large sweeps (full M×N×K cross product, K = 16384, 1024³) run with
//! OPENKERN_TEST_LARGE=1.

mod common;
use common::*;
use openkern::ops::matmul::CoopTile;
use openkern::ops::{self, Activation, MatmulKernel, MatmulOptions};
use openkern::{DType, Device, Error, Tensor};

const SWEEP: [usize; 7] = [1, 3, 17, 63, 65, 127, 257];
/// The dtypes matmul takes (not `DType::ALL`, which may grow index dtypes).
const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
const TRANSPOSES: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// One matmul problem: batch shapes of A and B, (M, N, K), options.
#[derive(Clone)]
struct Case {
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    dtype: DType,
    out: DType,
    bias: Option<DType>,
    act: Option<Activation>,
    kernel: MatmulKernel,
}

impl Case {
    fn new(m: usize, n: usize, k: usize, dtype: DType) -> Self {
        Case {
            a_batch: vec![],
            b_batch: vec![],
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            dtype,
            out: dtype,
            bias: None,
            act: None,
            kernel: MatmulKernel::Auto,
        }
    }

    fn a_shape(&self) -> Vec<usize> {
        let mut s = self.a_batch.clone();
        s.extend(if self.trans_a {
            [self.k, self.m]
        } else {
            [self.m, self.k]
        });
        s
    }

    fn b_shape(&self) -> Vec<usize> {
        let mut s = self.b_batch.clone();
        s.extend(if self.trans_b {
            [self.n, self.k]
        } else {
            [self.k, self.n]
        });
        s
    }
}

fn act_f64(act: Option<Activation>, x: f64) -> f64 {
    let Some(act) = act else { return x };
    match act {
        Activation::Gelu => 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Silu => x / (1.0 + (-x).exp()),
        // NaN stays NaN (f64::max would return 0)
        Activation::Relu if x.is_nan() => x,
        Activation::Relu => x.max(0.0),
        _ => unreachable!("new activation: add its reference"),
    }
}

/// erf by its Maclaurin series (|x| < 5, ~1e-12 in f64), 1 beyond.
fn erf64(x: f64) -> f64 {
    if x.abs() >= 5.0 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// The f64 reference of `case` on the rounded inputs.
fn reference(case: &Case, a: &[f32], b: &[f32], bias: Option<&[f32]>) -> (Vec<usize>, Vec<f64>) {
    let batch = openkern::shape::broadcast_shapes("ref", &case.a_batch, &case.b_batch).unwrap();
    let sa = openkern::shape::broadcast_strides(&case.a_batch, &batch);
    let sb = openkern::shape::broadcast_strides(&case.b_batch, &batch);
    let (m, n, k) = (case.m, case.n, case.k);
    let count: usize = batch.iter().product();
    let mut out = Vec::with_capacity(count * m * n);
    for bi in 0..count {
        let (mut oa, mut ob, mut rem) = (0, 0, bi);
        for d in (0..batch.len()).rev() {
            let c = rem % batch[d];
            rem /= batch[d];
            oa += c * sa[d] * m * k;
            ob += c * sb[d] * k * n;
        }
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let av = if case.trans_a {
                        a[oa + p * m + i]
                    } else {
                        a[oa + i * k + p]
                    };
                    let bv = if case.trans_b {
                        b[ob + j * k + p]
                    } else {
                        b[ob + p * n + j]
                    };
                    s += av as f64 * bv as f64;
                }
                if let Some(bias) = bias {
                    s += bias[j] as f64;
                }
                out.push(act_f64(case.act, s));
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (shape, out)
}

fn run(device: &Device, case: &Case, seed: u64) {
    let (ash, bsh) = (case.a_shape(), case.b_shape());
    let na: usize = ash.iter().product();
    let nb: usize = bsh.iter().product();
    let a = quantize(&random(na, seed), case.dtype);
    let b = quantize(&random(nb, seed + 1), case.dtype);
    let bias = case.bias.map(|d| quantize(&random(case.n, seed + 2), d));
    let ta = tensor(device, &a, &ash, case.dtype);
    let tb = tensor(device, &b, &bsh, case.dtype);
    let tbias = case
        .bias
        .map(|d| tensor(device, bias.as_ref().unwrap(), &[case.n], d));
    let opts = MatmulOptions {
        trans_a: case.trans_a,
        trans_b: case.trans_b,
        out_dtype: Some(case.out),
        bias: tbias,
        activation: case.act,
        kernel: case.kernel,
    };
    let what = format!(
        "{:?}{} · {:?}{} {}→{} bias {:?} {:?} kernel {:?} on {}",
        ash,
        if case.trans_a { "ᵀ" } else { "" },
        bsh,
        if case.trans_b { "ᵀ" } else { "" },
        case.dtype,
        case.out,
        case.bias,
        case.act,
        case.kernel,
        device.info().name
    );
    let got = ops::matmul_with(&ta, &tb, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (shape, want) = reference(case, &a, &b, bias.as_deref());
    assert_eq!(got.shape(), &shape[..], "{what}: shape");
    assert_eq!(got.dtype(), case.out, "{what}: dtype");
    let atol = 2.0 * case.k as f64 * DType::F32.epsilon()
        + if case.act.is_none() { 0.0 } else { 1e-6 }
        // f16 outputs below 6.1e-5 are subnormal: absolute spacing 6e-8.
        + if case.out == DType::F16 { 6e-8 } else { 0.0 };
    let rtol = case.out.epsilon() * 1.01 + 4.0 * DType::F32.epsilon();
    assert_close(&what, &got.to_f32_vec().unwrap(), &want, atol, rtol);
}

/// M, N, K where one of them runs over SWEEP and the others are small odd sizes.
fn sweep_shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &x in &SWEEP {
        v.push((x, 17, 33));
        v.push((33, x, 17));
        v.push((17, 33, x));
    }
    if large() {
        for &m in &SWEEP {
            for &n in &SWEEP {
                for &k in &SWEEP {
                    v.push((m, n, k));
                }
            }
        }
    }
    v
}

/// Runs the sweep (every transpose, every dtype) with `kernel` forced on the GPU.
fn sweep_kernel(kernel: MatmulKernel, max_m: usize, devices: &[Device]) {
    for device in devices {
        for (i, &(m, n, k)) in sweep_shapes().iter().enumerate() {
            if m > max_m {
                continue;
            }
            for dtype in FLOATS {
                for (j, &(ta, tb)) in TRANSPOSES.iter().enumerate() {
                    let mut c = Case::new(m, n, k, dtype);
                    c.trans_a = ta;
                    c.trans_b = tb;
                    c.kernel = kernel;
                    run(device, &c, (i * 16 + j) as u64);
                }
            }
        }
    }
}

#[test]
fn sweep_auto_every_backend() {
    sweep_kernel(MatmulKernel::Auto, usize::MAX, &devices());
}

#[test]
fn sweep_tiled_kernel() {
    sweep_kernel(
        MatmulKernel::Tiled,
        usize::MAX,
        &gpu().into_iter().collect::<Vec<_>>(),
    );
}

#[test]
fn sweep_subgroup_kernel() {
    let Some(device) = gpu() else { return };
    let f = &device.info().features;
    if !(f.subgroup && f.subgroup_min_size == f.subgroup_max_size) {
        eprintln!(
            "WARNING: {} has no fixed-size subgroups; the subgroup GEMM is SKIPPED",
            device.info().name
        );
        return;
    }
    sweep_kernel(
        MatmulKernel::Subgroup,
        usize::MAX,
        std::slice::from_ref(&device),
    );
    // Every tile height the launcher picks (M cut into chunks of at most 32 rows, or 24
    // with B pairs along K, rounded up to 8: 9 → 16, 24 → 24, 25 → 32, 33 → 2 × 24, 72 →
    // 3 × 24, 100 → 4 × 32, 257 → 9 × 32 with two subgroups per workgroup), and the
    // longest K it takes on a loop-limited driver.
    let mut shapes: Vec<(usize, usize, usize)> = [9, 24, 25, 33, 72, 100, 257]
        .iter()
        .map(|&m| (m, 37, 41))
        .collect();
    // Even N and K: 16-bit operands load word pairs along K of A and of B (trans_b) or
    // along N of B, each alone and together, with odd tails of K.
    for m in [9, 33, 72, 257] {
        shapes.extend([(m, 38, 42), (m, 38, 41), (m, 37, 42)]);
    }
    shapes.push((19, 33, 16384));
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for dtype in FLOATS {
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                let mut c = Case::new(m, n, k, dtype);
                (c.trans_a, c.trans_b, c.kernel) = (ta, tb, MatmulKernel::Subgroup);
                run(&device, &c, 40 + i as u64);
            }
        }
    }
}

#[test]
fn sweep_naive_and_splitk_kernels() {
    let gpu: Vec<Device> = gpu().into_iter().collect();
    for device in &gpu {
        for kernel in [MatmulKernel::Naive, MatmulKernel::SplitK] {
            for &(m, n, k) in &[(17, 33, 257), (65, 3, 127), (1, 63, 1000), (3, 5, 1)] {
                for dtype in FLOATS {
                    for (ta, tb) in TRANSPOSES {
                        let mut c = Case::new(m, n, k, dtype);
                        (c.trans_a, c.trans_b, c.kernel) = (ta, tb, kernel);
                        run(device, &c, 7);
                    }
                }
            }
        }
    }
}

#[test]
fn gemv_kernels_small_m() {
    let Some(device) = gpu() else { return };
    let f = &device.info().features;
    let subgroup = f.subgroup && f.subgroup_min_size == f.subgroup_max_size;
    if !subgroup {
        eprintln!("WARNING: adapter has no fixed-size subgroups; the subgroup GEMV is SKIPPED");
    }
    for m in [1, 2, 3, 8] {
        // K = 96 and 1000: whole octets along K (the subgroup kernel's load8_b path)
        for &(n, k) in &[(1, 1), (3, 17), (63, 257), (257, 63), (65, 1000), (5, 96)] {
            for dtype in FLOATS {
                for (ta, tb) in TRANSPOSES {
                    let mut c = Case::new(m, n, k, dtype);
                    (c.trans_a, c.trans_b, c.kernel) = (ta, tb, MatmulKernel::Gemv);
                    run(&device, &c, 11);
                    if subgroup && tb {
                        c.kernel = MatmulKernel::GemvSubgroup;
                        run(&device, &c, 12);
                    }
                }
            }
        }
    }
}

fn large_k(device: &Device) {
    let k = if large() { 16384 } else { 4099 };
    for dtype in FLOATS {
        for (ta, tb) in [(false, false), (false, true)] {
            // M = 1: decode GEMV; M = 19: split K; M = 65: tiled; N = 3: skinny
            // (split K even at M = 1).
            for (m, n) in [(1, 33), (19, 33), (65, 33), (1, 3), (5, 2)] {
                let mut c = Case::new(m, n, k, dtype);
                (c.trans_a, c.trans_b) = (ta, tb);
                run(device, &c, 3);
            }
        }
    }
}
backend_tests!(large_k => large_k_cpu, large_k_gpu);

fn big_square_when_large(device: &Device) {
    if !large() {
        eprintln!("1024³ and 4096 × 4096 × 1 matmuls run with {LARGE}=1");
        return;
    }
    for dtype in [DType::F32, DType::F16] {
        run(device, &Case::new(1024, 1024, 1024, dtype), 5);
        let mut c = Case::new(1, 4096, 4096, dtype);
        c.trans_b = true;
        run(device, &c, 6);
    }
}
backend_tests!(big_square_when_large => big_square_when_large_cpu, big_square_when_large_gpu);

fn broadcast_batches(device: &Device) {
    let batches: [(&[usize], &[usize]); 5] = [
        (&[2, 1, 3], &[4, 1]),
        (&[], &[5]),
        (&[5], &[]),
        (&[3], &[3]),
        (&[1, 2], &[2, 1]),
    ];
    for (ab, bb) in batches {
        for dtype in [DType::F32, DType::BF16] {
            for (ta, tb) in TRANSPOSES {
                for &(m, n, k) in &[(1, 17, 63), (17, 9, 33)] {
                    let mut c = Case::new(m, n, k, dtype);
                    c.a_batch = ab.to_vec();
                    c.b_batch = bb.to_vec();
                    (c.trans_a, c.trans_b) = (ta, tb);
                    run(device, &c, 21);
                    if !device.is_cpu() {
                        c.kernel = MatmulKernel::Tiled;
                        run(device, &c, 22);
                    }
                }
            }
        }
    }
}
backend_tests!(broadcast_batches => broadcast_batches_cpu, broadcast_batches_gpu);

fn output_dtypes_bias_and_activations(device: &Device) {
    let acts = [
        None,
        Some(Activation::Gelu),
        Some(Activation::GeluTanh),
        Some(Activation::Silu),
        Some(Activation::Relu),
    ];
    let kernels: &[MatmulKernel] = if device.is_cpu() {
        &[MatmulKernel::Auto]
    } else {
        &[
            MatmulKernel::Auto,
            MatmulKernel::Tiled,
            MatmulKernel::SplitK,
            MatmulKernel::Naive,
            MatmulKernel::Subgroup,
        ]
    };
    let f = &device.info().features;
    let fixed_subgroups = f.subgroup && f.subgroup_min_size == f.subgroup_max_size;
    for &kernel in kernels {
        if kernel == MatmulKernel::Subgroup && !fixed_subgroups {
            continue;
        }
        for dtype in FLOATS {
            for out in FLOATS {
                for (i, act) in acts.into_iter().enumerate() {
                    for m in [1, 37] {
                        let mut c = Case::new(m, 19, 70, dtype);
                        c.trans_b = true;
                        c.out = out;
                        // parameters are f32 or the activation dtype (crate docs)
                        c.bias = Some(if i % 2 == 0 { DType::F32 } else { dtype });
                        c.act = act;
                        c.kernel = kernel;
                        run(device, &c, 31);
                    }
                }
            }
        }
    }
}
backend_tests!(output_dtypes_bias_and_activations => output_dtypes_bias_and_activations_cpu, output_dtypes_bias_and_activations_gpu);

/// The fused epilogue (bias, then each activation) with NaN and ±∞ reaching it through A
/// (rows holding one +∞, one −∞, one NaN, and both infinities) and through the bias, on
/// shapes spanning several tiles of every kernel in M and N, none a tile multiple: each
/// element must land where the f64 reference puts it, whichever kernel runs.
fn epilogue_special_values(device: &Device) {
    let acts = [
        None,
        Some(Activation::Gelu),
        Some(Activation::GeluTanh),
        Some(Activation::Silu),
        Some(Activation::Relu),
    ];
    let f = &device.info().features;
    let mut kernels = vec![MatmulKernel::Auto];
    if !device.is_cpu() {
        kernels.extend([
            MatmulKernel::Tiled,
            MatmulKernel::SplitK,
            MatmulKernel::Naive,
        ]);
        if f.subgroup && f.subgroup_min_size == f.subgroup_max_size {
            kernels.push(MatmulKernel::Subgroup);
        }
    }
    for &(m, n, k) in &[(70, 67, 40), (5, 130, 33)] {
        let mut a = random(m * k, 41);
        a[k + 3] = f32::INFINITY;
        a[4 * k] = f32::NEG_INFINITY;
        a[m / 2 * k + 7] = f32::NAN;
        a[(m - 1) * k + 1] = f32::INFINITY;
        a[(m - 1) * k + 2] = f32::NEG_INFINITY;
        let w = random(n * k, 42);
        let mut bias = random(n, 43);
        bias[1] = f32::INFINITY;
        bias[n / 2] = f32::NEG_INFINITY;
        bias[n - 2] = f32::NAN;
        let ta = tensor(device, &a, &[m, k], DType::F32);
        let tw = tensor(device, &w, &[n, k], DType::F32);
        let tbias = tensor(device, &bias, &[n], DType::F32);
        for &kernel in &kernels {
            for act in acts {
                for with_bias in [false, true] {
                    let mut c = Case::new(m, n, k, DType::F32);
                    c.trans_b = true;
                    c.act = act;
                    c.kernel = kernel;
                    let opts = MatmulOptions {
                        trans_b: true,
                        bias: with_bias.then(|| tbias.clone()),
                        activation: act,
                        kernel,
                        ..Default::default()
                    };
                    let what = format!(
                        "{m}x{n}x{k} bias {with_bias} {act:?} kernel {kernel:?} on {}",
                        device.info().name
                    );
                    let got = ops::matmul_with(&ta, &tw, &opts)
                        .unwrap_or_else(|e| panic!("{what}: {e}"))
                        .to_f32_vec()
                        .unwrap();
                    let (_, want) = reference(&c, &a, &w, with_bias.then_some(&bias[..]));
                    let atol = 2.0 * k as f64 * DType::F32.epsilon()
                        + if act.is_none() { 0.0 } else { 1e-6 };
                    assert_close(&what, &got, &want, atol, 5.0 * DType::F32.epsilon());
                }
            }
        }
    }
}
backend_tests!(epilogue_special_values => epilogue_special_values_cpu, epilogue_special_values_gpu);

fn linear_layout_and_leading_dims(device: &Device) {
    for dtype in FLOATS {
        let (inp, outp) = (45, 23);
        let x = quantize(&random(2 * 5 * inp, 1), dtype);
        let w = quantize(&random(outp * inp, 2), dtype);
        let bias = quantize(&random(outp, 3), dtype);
        let tx = tensor(device, &x, &[2, 5, inp], dtype);
        let tw = tensor(device, &w, &[outp, inp], dtype);
        let tbias = tensor(device, &bias, &[outp], dtype);
        let got = ops::linear(&tx, &tw, Some(&tbias), Some(Activation::Silu)).unwrap();
        assert_eq!(got.shape(), &[2, 5, outp]);
        let mut c = Case::new(10, outp, inp, dtype);
        c.trans_b = true;
        c.act = Some(Activation::Silu);
        let (_, want) = reference(&c, &x, &w, Some(&bias));
        assert_close(
            &format!("linear {dtype} on {}", device.info().name),
            &got.to_f32_vec().unwrap(),
            &want,
            2.0 * inp as f64 * DType::F32.epsilon() + 1e-6,
            dtype.epsilon() * 1.01 + 4.0 * DType::F32.epsilon(),
        );
    }
}
backend_tests!(linear_layout_and_leading_dims => linear_layout_and_leading_dims_cpu, linear_layout_and_leading_dims_gpu);

/// Every output element is written: the output reuses a pooled buffer that held NaNs
/// just before (a missed tile edge would leave NaN behind), and the output has exactly
/// batch·M·N elements.
#[test]
fn every_output_element_is_written() {
    let Some(device) = gpu() else { return };
    let f = &device.info().features;
    let mut kernels = vec![
        MatmulKernel::Auto,
        MatmulKernel::Tiled,
        MatmulKernel::SplitK,
        MatmulKernel::Naive,
    ];
    if f.subgroup && f.subgroup_min_size == f.subgroup_max_size {
        kernels.push(MatmulKernel::Subgroup);
    }
    for kernel in kernels {
        for &(m, n, k) in &[(65, 63, 17), (1, 257, 9), (127, 1, 300)] {
            for out in FLOATS {
                let numel = 2 * m * n;
                let nan = Tensor::from_f32(&device, &vec![f32::NAN; numel], &[numel], out).unwrap();
                drop(nan);
                let a = tensor(&device, &random(2 * m * k, 1), &[2, m, k], DType::F32);
                let b = tensor(&device, &random(k * n, 2), &[k, n], DType::F32);
                let opts = MatmulOptions {
                    out_dtype: Some(out),
                    kernel,
                    ..Default::default()
                };
                let got = ops::matmul_with(&a, &b, &opts)
                    .unwrap()
                    .to_f32_vec()
                    .unwrap();
                assert_eq!(got.len(), numel);
                if let Some(i) = got.iter().position(|v| !v.is_finite()) {
                    panic!("{kernel:?} {m}x{n}x{k} → {out}: element {i} of {numel} never written");
                }
            }
        }
    }
}

fn empty_and_zero_k(device: &Device) {
    let a = tensor(device, &[], &[0, 5], DType::F32);
    let b = tensor(device, &random(15, 1), &[5, 3], DType::F32);
    let c = ops::matmul(&a, &b).unwrap();
    assert_eq!(c.shape(), &[0, 3]);
    // K = 0: the sum is empty, so the output is the bias (then the activation).
    let a = tensor(device, &[], &[4, 0], DType::F32);
    let b = tensor(device, &[], &[0, 3], DType::F32);
    let bias = tensor(device, &[1.0, -2.0, 0.5], &[3], DType::F32);
    let opts = MatmulOptions {
        bias: Some(bias),
        ..Default::default()
    };
    let c = ops::matmul_with(&a, &b, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(c, [1.0, -2.0, 0.5].repeat(4), "on {}", device.info().name);
}
backend_tests!(empty_and_zero_k => empty_and_zero_k_cpu, empty_and_zero_k_gpu);

/// Set to 1 where the adapter has cooperative matrices (the GPU bundle's run.sh does when
/// `openkern info` lists a configuration): then an adapter on which no cooperative-matrix
/// kernel can run fails the coop tests instead of skipping them.
const REQUIRE_COOP: &str = "OPENKERN_REQUIRE_COOP";

/// The cooperative-matrix kernel of `tile`, forced, against the f64 reference on any
/// adapter that reports its f16→f32 configuration; skipped loudly elsewhere, where the
/// forced kernel must be a typed error.
fn coop_where_reported(tile: CoopTile, kernel: MatmulKernel) {
    let Some(device) = gpu() else { return };
    let f = &device.info().features;
    let usable = ops::matmul::coop_tile(f);
    if !(usable.is_ok() && f.cooperative_matrix.iter().any(|c| tile.matches(c))) {
        let why = match &usable {
            Ok((t, _)) => format!("it reports {t}, not {tile}"),
            Err(why) => why.clone(),
        };
        if usable.is_err() && std::env::var(REQUIRE_COOP).is_ok_and(|v| v == "1") {
            panic!(
                "{REQUIRE_COOP}=1 but no cooperative-matrix kernel runs on {}: {why}",
                device.info().name
            );
        }
        eprintln!(
            "WARNING: the {tile} cooperative-matrix kernel is SKIPPED on {} ({why}); it runs against the f64 reference on adapters reporting {tile}x{} f16->f32",
            device.info().name,
            tile.side()
        );
        let a = tensor(&device, &random(16 * 16, 1), &[16, 16], DType::F16);
        let opts = MatmulOptions {
            kernel,
            ..Default::default()
        };
        let e = ops::matmul_with(&a, &a, &opts).unwrap_err();
        assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
        return;
    }
    eprintln!("{tile} cooperative-matrix kernel on {}", device.info().name);
    for (i, &(m, n, k)) in sweep_shapes().iter().enumerate() {
        for (ta, tb) in TRANSPOSES {
            for out in [DType::F16, DType::F32] {
                let mut c = Case::new(m, n, k, DType::F16);
                (c.trans_a, c.trans_b, c.out, c.kernel) = (ta, tb, out, kernel);
                run(&device, &c, i as u64);
            }
        }
    }
    // a block taller and wider than the larger quadrant grids, batched, with the epilogue
    let mut c = Case::new(130, 70, 4099, DType::F16);
    (c.trans_b, c.bias, c.act, c.kernel) = (true, Some(DType::F32), Some(Activation::Gelu), kernel);
    c.a_batch = vec![2];
    run(&device, &c, 99);
    let mut c = Case::new(200, 150, 96, DType::F16);
    (c.bias, c.act, c.out, c.kernel) =
        (Some(DType::F16), Some(Activation::Silu), DType::F32, kernel);
    c.b_batch = vec![3];
    run(&device, &c, 98);
    let desc = ops::matmul::describe(
        &tensor(&device, &random(64 * 64, 1), &[64, 64], DType::F16),
        &tensor(&device, &random(64 * 64, 2), &[64, 64], DType::F16),
        &MatmulOptions {
            kernel,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(desc, format!("coop {tile}"));
    if large() {
        run(
            &device,
            &Case {
                kernel,
                ..Case::new(1024, 1024, 1024, DType::F16)
            },
            5,
        );
    }
}

#[test]
fn coop16x16_kernel_where_reported() {
    coop_where_reported(CoopTile::X16, MatmulKernel::Coop16x16);
}

#[test]
fn coop8x8_kernel_where_reported() {
    coop_where_reported(CoopTile::X8, MatmulKernel::Coop8x8);
}

/// `Auto` (and a plain `Coop`) take the tile the adapter's report gives, 16×16 over 8×8;
/// without one, `Auto` runs another kernel and `Coop` is a typed error.
#[test]
fn coop_choice_follows_the_adapters_report() {
    let Some(device) = gpu() else { return };
    let a = tensor(&device, &random(256 * 256, 1), &[256, 256], DType::F16);
    let auto = ops::matmul::describe(&a, &a, &MatmulOptions::default()).unwrap();
    let coop = MatmulOptions {
        kernel: MatmulKernel::Coop,
        ..Default::default()
    };
    let coop_off = std::env::var("OPENKERN_COOP").is_ok_and(|v| v == "0");
    match ops::matmul::coop_tile(&device.info().features) {
        Ok((tile, why)) => {
            eprintln!("{}: coop {tile} ({why})", device.info().name);
            assert_eq!(
                ops::matmul::describe(&a, &a, &coop).unwrap(),
                format!("coop {tile}")
            );
            if !coop_off {
                assert_eq!(auto, format!("coop {tile}"));
            }
            run(
                &device,
                &Case {
                    kernel: MatmulKernel::Coop,
                    ..Case::new(65, 127, 63, DType::F16)
                },
                7,
            );
        }
        Err(why) => {
            eprintln!(
                "{}: no cooperative-matrix kernel ({why}); Auto runs {auto}",
                device.info().name
            );
            assert!(!auto.starts_with("coop"), "{auto}");
            let e = ops::matmul_with(&a, &a, &coop).unwrap_err();
            assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
            assert!(e.to_string().contains("8x8x8"), "{e}");
        }
    }
}

#[test]
fn mistakes_are_typed_errors() {
    for device in devices() {
        let t = |shape: &[usize], dtype| {
            tensor(&device, &random(shape.iter().product(), 1), shape, dtype)
        };
        let a = t(&[4, 5], DType::F32);
        let b = t(&[6, 3], DType::F32);
        let e = ops::matmul(&a, &b).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InnerDimMismatch {
                    k_lhs: 5,
                    k_rhs: 6,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("K = 5") && e.to_string().contains("K = 6"),
            "{e}"
        );
        let e = ops::matmul(&t(&[5], DType::F32), &b).unwrap_err();
        assert!(e.to_string().contains("rank ≥ 2"), "{e}");
        let e = ops::matmul(&a, &t(&[5, 3], DType::F16)).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { .. }), "{e}");
        let e = ops::matmul(&t(&[2, 4, 5], DType::F32), &t(&[3, 5, 3], DType::F32)).unwrap_err();
        assert!(matches!(e, Error::Broadcast { .. }), "{e}");
        let e = ops::linear(
            &t(&[2, 5], DType::F32),
            &t(&[3, 5], DType::F32),
            Some(&t(&[4], DType::F32)),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("shape [3]"), "{e}");
        let e = ops::linear(&t(&[2, 5], DType::F32), &t(&[5], DType::F32), None, None).unwrap_err();
        assert!(e.to_string().contains("[out_features, in_features]"), "{e}");
        let e = ops::linear(
            &t(&[2, 5], DType::F32),
            &t(&[3, 5], DType::F32),
            None,
            Some(Activation::SwiGlu),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Argument { .. }), "{e}");
        assert!(e.to_string().contains("ops::swiglu"), "{e}");
        let ids = Tensor::from_slice(&device, &[1u32, 2, 3, 4], &[2, 2]).unwrap();
        let e = ops::matmul(&ids, &ids).unwrap_err();
        assert!(matches!(e, Error::UnsupportedDType { .. }), "{e}");
        let deep = t(&[1; 9], DType::F32);
        assert!(matches!(
            ops::matmul(&deep, &deep).unwrap_err(),
            Error::Shape { .. }
        ));
    }
    if let Some(gpu) = gpu() {
        let a = tensor(&gpu, &random(20, 1), &[4, 5], DType::F32);
        let c = tensor(&Device::cpu(), &random(15, 1), &[5, 3], DType::F32);
        assert!(matches!(
            ops::matmul(&a, &c).unwrap_err(),
            Error::DeviceMismatch { .. }
        ));
        let b = tensor(&gpu, &random(15, 1), &[5, 3], DType::F32);
        let big_m = tensor(&gpu, &random(9 * 5, 1), &[9, 5], DType::F32);
        let opts = MatmulOptions {
            kernel: MatmulKernel::Gemv,
            ..Default::default()
        };
        let e = ops::matmul_with(&big_m, &b, &opts).unwrap_err();
        assert!(e.to_string().contains("M ≤ 8"), "{e}");
        let opts = MatmulOptions {
            kernel: MatmulKernel::Coop,
            ..Default::default()
        };
        let e = ops::matmul_with(&a, &b, &opts).unwrap_err();
        assert!(
            matches!(e, Error::MissingFeature { .. } | Error::Argument { .. }),
            "{e}"
        );
    }
}

/// More than 65535 workgroups (a batch of 70000 tiny products) fold into a second grid
/// dimension and still cover every matrix.
#[test]
fn grids_above_65535_groups_fold() {
    let Some(device) = gpu() else { return };
    let batch = 70_000;
    let a = random(batch * 2, 1);
    let b = random(batch * 2, 2);
    let ta = tensor(&device, &a, &[batch, 1, 2], DType::F32);
    let tb = tensor(&device, &b, &[batch, 2, 1], DType::F32);
    let want: Vec<f64> = (0..batch)
        .map(|i| a[2 * i] as f64 * b[2 * i] as f64 + a[2 * i + 1] as f64 * b[2 * i + 1] as f64)
        .collect();
    for kernel in [MatmulKernel::Auto, MatmulKernel::Tiled, MatmulKernel::Naive] {
        let opts = MatmulOptions {
            kernel,
            ..Default::default()
        };
        let got = ops::matmul_with(&ta, &tb, &opts).unwrap();
        assert_eq!(got.shape(), &[batch, 1, 1]);
        assert_close(
            &format!("{kernel:?} batch {batch}"),
            &got.to_f32_vec().unwrap(),
            &want,
            1e-6,
            1e-6,
        );
    }
}

/// An output larger than one storage binding is refused with the sizes, not truncated.
#[test]
fn output_over_the_binding_limit_is_a_typed_error() {
    let Some(device) = gpu() else { return };
    let limit = device.info().limits.max_storage_buffer_binding_size;
    let n = ((limit / 4) as f64).sqrt() as usize + 1; // n·n f32 > limit
    if n * n > 1 << 31 {
        eprintln!("binding limit {limit} too large to exceed cheaply; skipped");
        return;
    }
    let a = tensor(&device, &vec![1.0; n], &[n, 1], DType::F32);
    let b = tensor(&device, &vec![1.0; n], &[1, n], DType::F32);
    let e = ops::matmul(&a, &b).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

/// Kernel selection: decode shapes take the GEMV, skinny ones split K, and describe()
/// says so.
#[test]
fn auto_picks_gemv_for_decode_and_split_k_for_skinny() {
    let Some(device) = gpu() else { return };
    let t = |shape: &[usize]| {
        tensor(
            &device,
            &random(shape.iter().product(), 1),
            shape,
            DType::F32,
        )
    };
    let linear = MatmulOptions {
        trans_b: true,
        ..Default::default()
    };
    let d = ops::matmul::describe(&t(&[1, 4096]), &t(&[512, 4096]), &linear).unwrap();
    assert!(d.starts_with("gemv"), "{d}");
    let d = ops::matmul::describe(&t(&[1, 8192]), &t(&[2, 8192]), &linear).unwrap();
    assert!(d.contains("split-k"), "{d}");
    let d =
        ops::matmul::describe(&t(&[2, 8192]), &t(&[8192, 2]), &MatmulOptions::default()).unwrap();
    assert!(d.contains("split-k"), "{d}");
    let cpu = Device::cpu();
    let x = tensor(&cpu, &[1.0; 4], &[2, 2], DType::F32);
    let d = ops::matmul::describe(&x, &x, &MatmulOptions::default()).unwrap();
    assert_eq!(d, "cpu gemm");
}

/// The CPU backend caches the widened or packed copy of a weight: repeated calls agree,
/// and a new weight (possibly at a freed weight's address, in a reused pooled buffer)
/// never sees the old copy.
fn weight_cache_follows_the_weight(device: &Device) {
    for dtype in [DType::F16, DType::F32] {
        weight_cache_follows(device, dtype);
    }
}

fn weight_cache_follows(device: &Device, dtype: DType) {
    let (m, k, n) = (40, 33, 21); // above the streaming-GEMV rows, so the GEMM path
    let x = tensor(device, &quantize(&random(m * k, 1), dtype), &[m, k], dtype);
    let mut last = None;
    for seed in 0..4u64 {
        let wv = quantize(&random(n * k, 10 + seed), dtype);
        let w = tensor(device, &wv, &[n, k], dtype);
        let a = ops::linear(&x, &w, None, None)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let b = ops::linear(&x, &w, None, None)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        assert_eq!(
            a, b,
            "{dtype} seed {seed}: a cached weight gives the same result"
        );
        let xs = quantize(&random(m * k, 1), dtype);
        let want: Vec<f64> = (0..m * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                (0..k)
                    .map(|p| xs[r * k + p] as f64 * wv[c * k + p] as f64)
                    .sum()
            })
            .collect();
        assert_close(&format!("seed {seed}"), &a, &want, 1e-3, 2e-3);
        assert_ne!(
            last.as_ref(),
            Some(&a),
            "seed {seed}: a new weight, a new result"
        );
        last = Some(a);
        drop(w);
    }
}
backend_tests!(weight_cache_follows_the_weight => weight_cache_follows_the_weight_cpu, weight_cache_follows_the_weight_gpu);

/// `x · wᵀ + bias` in f64 for row-major `x` [m, k] and `w` [n, k], then `act`.
fn linear_ref(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Option<Activation>,
    (m, n, k): (usize, usize, usize),
) -> Vec<f64> {
    (0..m * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            let s: f64 = (0..k)
                .map(|p| x[r * k + p] as f64 * w[c * k + p] as f64)
                .sum();
            act_f64(act, s + bias.map_or(0.0, |b| b[c] as f64))
        })
        .collect()
}

/// Shapes around the CPU GEMM's blocking: every M from 1 to 17 (strips of 6 rows and
/// their tails, the streaming GEMV's rows), M past a 96-row task and several tasks, N
/// off the 16-column panels, K tails and K over one 576-long block (600 = 2 blocks of
/// 300, 1153 = 385 + 385 + 383), each with bias and an activation applied per output tile, in
/// every dtype; every output written even where the pooled buffer held NaN.
fn linear_blocking_shapes(device: &Device) {
    let mut shapes: Vec<(usize, usize, usize)> = (1..=17).map(|m| (m, 35, 19)).collect();
    shapes.extend([
        (7, 17, 1153),
        (11, 17, 1153),
        (13, 33, 600),
        (97, 47, 257),
        (200, 161, 40),
        (33, 300, 300),
    ]);
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for dtype in FLOATS {
            let nan = Tensor::from_f32(device, &vec![f32::NAN; m * n], &[m * n], DType::F32);
            drop(nan.unwrap());
            let xv = quantize(&random(m * k, 3 * i as u64), dtype);
            let wv = quantize(&random(n * k, 3 * i as u64 + 1), dtype);
            let bv = quantize(&random(n, 3 * i as u64 + 2), dtype);
            let x = tensor(device, &xv, &[m, k], dtype);
            let w = tensor(device, &wv, &[n, k], dtype);
            let b = tensor(device, &bv, &[n], dtype);
            let act = [None, Some(Activation::Gelu), Some(Activation::Silu)][i % 3];
            let got = ops::linear(&x, &w, Some(&b), act)
                .unwrap()
                .to_f32_vec()
                .unwrap();
            let want = linear_ref(&xv, &wv, Some(&bv), act, (m, n, k));
            let atol = 2.0 * k as f64 * DType::F32.epsilon() + 1e-6 + 6e-8;
            let rtol = dtype.epsilon() * 1.01 + 4.0 * DType::F32.epsilon();
            let what = format!("linear {m}x{n}x{k} {dtype} {act:?}");
            assert_close(&what, &got, &want, atol, rtol);
        }
    }
}
backend_tests!(linear_blocking_shapes => linear_blocking_shapes_cpu, linear_blocking_shapes_gpu);

/// One weight read two ways (`x · wᵀ` by linear, `x · w` by matmul, square so the
/// shapes agree) and the two halves of a stacked weight (views into one buffer): the
/// CPU's packed copies of them are separate entries, so each product is its own.
fn packed_weight_views_and_layouts(device: &Device) {
    let (m, k) = (40, 48);
    for dtype in [DType::F32, DType::F16] {
        let xv = quantize(&random(m * k, 7), dtype);
        let x = tensor(device, &xv, &[m, k], dtype);
        // square: w as [out, in] and as [in, out]
        let wv = quantize(&random(k * k, 8), dtype);
        let w = tensor(device, &wv, &[k, k], dtype);
        let wt: Vec<f32> = (0..k * k).map(|i| wv[(i % k) * k + i / k]).collect();
        for round in 0..2 {
            let lin = ops::linear(&x, &w, None, None).unwrap();
            let mm = ops::matmul(&x, &w).unwrap();
            let what = format!("{dtype} round {round}");
            assert_close(
                &format!("{what}: x·wᵀ"),
                &lin.to_f32_vec().unwrap(),
                &linear_ref(&xv, &wv, None, None, (m, k, k)),
                1e-4,
                2e-3,
            );
            assert_close(
                &format!("{what}: x·w"),
                &mm.to_f32_vec().unwrap(),
                &linear_ref(&xv, &wt, None, None, (m, k, k)),
                1e-4,
                2e-3,
            );
        }
        // stacked gate/up: the halves are views at two offsets of one storage
        let n = 24;
        let gv = quantize(&random(n * k, 9), dtype);
        let uv = quantize(&random(n * k, 10), dtype);
        let stacked = ops::concat(
            &[
                &tensor(device, &gv, &[n, k], dtype),
                &tensor(device, &uv, &[n, k], dtype),
            ],
            0,
        )
        .unwrap();
        let halves = ops::split(&stacked, &[n, n], 0).unwrap();
        for round in 0..2 {
            for (half, want) in halves.iter().zip([&gv, &uv]) {
                let got = ops::linear(&x, half, None, None).unwrap();
                assert_close(
                    &format!("{dtype} round {round}: a stacked weight's half"),
                    &got.to_f32_vec().unwrap(),
                    &linear_ref(&xv, want, None, None, (m, n, k)),
                    1e-4,
                    2e-3,
                );
            }
        }
    }
}
backend_tests!(packed_weight_views_and_layouts => packed_weight_views_and_layouts_cpu, packed_weight_views_and_layouts_gpu);

/// NaN and ±∞ reach exactly the outputs whose row of x or row of w holds them (the CPU
/// GEMM's zero-padded panel columns and partial strips must not spread them).
fn linear_nan_propagation(device: &Device) {
    let (m, n, k) = (14, 21, 37);
    let mut xv = random(m * k, 11);
    let mut wv = random(n * k, 12);
    xv[5 * k + 30] = f32::NAN; // row 5 of the output
    wv[17 * k + 3] = f32::INFINITY; // column 17
    let x = tensor(device, &xv, &[m, k], DType::F32);
    let w = tensor(device, &wv, &[n, k], DType::F32);
    let got = ops::linear(&x, &w, None, None)
        .unwrap()
        .to_f32_vec()
        .unwrap();
    for r in 0..m {
        for c in 0..n {
            let v = got[r * n + c];
            if r == 5 {
                assert!(v.is_nan(), "({r}, {c}) = {v}: want NaN");
            } else if c == 17 {
                assert!(v.is_infinite() || v.is_nan(), "({r}, {c}) = {v}: want ±∞");
            } else {
                assert!(v.is_finite(), "({r}, {c}) = {v}: want finite");
            }
        }
    }
}
backend_tests!(linear_nan_propagation => linear_nan_propagation_cpu, linear_nan_propagation_gpu);

/// Decode and small-M linears big enough for the CPU's parallel task paths (the streaming
/// GEMV at M ≤ 8 once n·k ≥ 2¹⁵, split into 64-row blocks whose 16-bit rows are
/// prefetched into the next group of four; the packed GEMM's tasks at M = 16 and 72):
/// N not a multiple of 4, 16 or 64, K not a multiple of 16 and shorter than the
/// prefetch distance, M = 1 written straight into the output and M > 1 transposed, each
/// product repeated so the calling thread and lingering pool helpers share the tasks.
fn parallel_task_paths(device: &Device) {
    let shapes = [
        (1, 203, 1001),
        (1, 4099, 9),
        (3, 130, 517),
        (8, 67, 600),
        (16, 389, 97),
        (72, 45, 1153),
    ];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for dtype in FLOATS {
            let xv = quantize(&random(m * k, 40 + 3 * i as u64), dtype);
            let wv = quantize(&random(n * k, 41 + 3 * i as u64), dtype);
            let bv = quantize(&random(n, 42 + 3 * i as u64), dtype);
            let x = tensor(device, &xv, &[m, k], dtype);
            let w = tensor(device, &wv, &[n, k], dtype);
            let b = tensor(device, &bv, &[n], dtype);
            let want = linear_ref(&xv, &wv, Some(&bv), None, (m, n, k));
            let atol = 2.0 * k as f64 * DType::F32.epsilon() + 1e-6 + 6e-8;
            let rtol = dtype.epsilon() * 1.01 + 4.0 * DType::F32.epsilon();
            for rep in 0..3 {
                let got = ops::linear(&x, &w, Some(&b), None)
                    .unwrap()
                    .to_f32_vec()
                    .unwrap();
                let what = format!("linear {m}x{n}x{k} {dtype} (call {rep})");
                assert_close(&what, &got, &want, atol, rtol);
            }
        }
    }
}
backend_tests!(parallel_task_paths => parallel_task_paths_cpu, parallel_task_paths_gpu);
