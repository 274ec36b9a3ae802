//! Shared test harness: the devices to run on, seeded inputs, and comparison against an
//! f64 reference that names the worst element.
//!
//! Every test body is written once over `devices()`, which yields the CPU device and, where
//! wgpu finds one, the default GPU adapter. With `OPENKERN_REQUIRE_GPU=1` (CI sets it) a
//! missing adapter fails the test instead of skipping the GPU half.
#![allow(dead_code)]

use openkern::{DType, Device, Tensor};
use std::sync::OnceLock;

/// Set to 1 to make a missing wgpu adapter a failure.
pub const REQUIRE_GPU: &str = "OPENKERN_REQUIRE_GPU";
/// Set to 1 for large sweeps (slow on software adapters).
pub const LARGE: &str = "OPENKERN_TEST_LARGE";

pub fn large() -> bool {
    std::env::var(LARGE).is_ok_and(|v| v == "1")
}

/// The GPU device shared by all tests of one binary (opening one per test is slow).
pub fn gpu() -> Option<Device> {
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    GPU.get_or_init(|| match Device::gpu() {
        Ok(d) => {
            eprintln!("GPU tests run on {} ({})", d.info().name, d.info().backend);
            Some(d)
        }
        Err(e) => {
            if std::env::var(REQUIRE_GPU).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_GPU}=1 but no wgpu adapter: {e}");
            }
            eprintln!("WARNING: no wgpu adapter ({e}); GPU tests are SKIPPED, only the CPU backend is tested");
            None
        }
    })
    .clone()
}

/// Serialises tests that read the shared GPU device's counters, which other tests in the
/// same binary would otherwise move.
pub fn counters_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every backend present: the CPU device, then the GPU if there is one.
pub fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu());
    v
}

/// The default adapter opened again without SUBGROUP, so kernels with a subgroup form
/// also run their shared-memory fallback. `None` when there is no adapter or it has no
/// subgroups anyway (then `gpu()` already runs the fallback).
pub fn gpu_without_subgroups() -> Option<Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    DEV.get_or_init(|| {
        let g = gpu()?;
        if !g.info().features.subgroup {
            return None;
        }
        let (device, _) = g.wgpu()?;
        let features = device.features() - wgpu::Features::SUBGROUP;
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .into_iter()
            .find(|a| a.get_info().name == g.info().name)?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("openkern test, no subgroups"),
            required_features: features - wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .ok()?;
        let d = Device::from_wgpu(device, queue);
        assert!(!d.info().features.subgroup);
        Some(d)
    })
    .clone()
}

/// Every backend, plus the GPU without subgroups where that makes a second variant:
/// for the row kernels (softmax, norms, reductions), whose reductions come in both forms.
pub fn devices_all_variants() -> Vec<Device> {
    let mut v = devices();
    v.extend(gpu_without_subgroups());
    v
}

/// Deterministic inputs in [-1, 1) (a 64-bit LCG; no rand dependency needed).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// `values` rounded through `dtype`, as the op will see them.
pub fn quantize(values: &[f32], dtype: DType) -> Vec<f32> {
    values
        .iter()
        .map(|&v| match dtype {
            DType::F32 => v,
            DType::F16 => half::f16::from_f32(v).to_f32(),
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            DType::U32 => (v as u32) as f32,
        })
        .collect()
}

/// A tensor of `dtype` holding `values`.
pub fn tensor(device: &Device, values: &[f32], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_f32(device, values, shape, dtype).expect("test tensor")
}

/// Asserts |got − want| ≤ atol + rtol·|want| elementwise; NaN must match NaN and
/// infinities must match exactly. Panics naming the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs reference {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let bad = if w.is_nan() {
            if g.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if w.is_infinite() {
            if g == w {
                0.0
            } else {
                f64::INFINITY
            }
        } else if g.is_nan() || g.is_infinite() {
            f64::INFINITY
        } else {
            (g - w).abs() - (atol + rtol * w.abs())
        };
        if bad > 0.0 && worst.is_none_or(|(_, b)| bad > b) {
            worst = Some((i, bad));
        }
    }
    if let Some((i, _)) = worst {
        let bad = got
            .iter()
            .zip(want)
            .filter(|(&g, &w)| {
                let (g, w) = (g as f64, w);
                !(g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= atol + rtol * w.abs())
            })
            .count();
        panic!(
            "{what}: {bad} of {} elements out of tolerance (atol {atol:e}, rtol {rtol:e}); worst at index {i}: got {}, want {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Which backend a generated test runs on (see [`backend_tests!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The native CPU backend.
    Cpu,
    /// The default wgpu adapter with everything it offers.
    Gpu,
    /// The default adapter opened again without SUBGROUP (the shared-memory fallbacks).
    GpuNoSubgroups,
}

/// What a test needs from a device beyond the basics, declared once per test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// SUBGROUP with one fixed subgroup size (the subgroup matmul and GEMV).
    FixedSubgroupSize,
    /// A 16×16×16 f16→f32 cooperative-matrix configuration, SUBGROUP and SHADER_F16.
    CoopMatrix16,
    /// SHADER_F16 (native f16 arithmetic).
    ShaderF16,
}

impl Requirement {
    /// Why `device` cannot run a test needing this, or `None` when it can.
    pub fn missing_on(self, device: &Device) -> Option<String> {
        let f = &device.info().features;
        let ok = match self {
            Requirement::FixedSubgroupSize => {
                f.subgroup && f.subgroup_min_size == f.subgroup_max_size
            }
            Requirement::CoopMatrix16 => {
                f.subgroup
                    && f.shader_f16
                    && f.cooperative_matrix.iter().any(|c| {
                        c.m == 16 && c.n == 16 && c.k == 16 && c.ab == "f16" && c.cr == "f32"
                    })
            }
            Requirement::ShaderF16 => f.shader_f16,
        };
        (!ok).then(|| format!("{} lacks {self:?}", device.info().name))
    }
}

/// The device for `backend`, or `None` (with a loud SKIPPED line, or a panic under
/// `OPENKERN_REQUIRE_GPU=1` where the adapter itself is missing) when the machine has no
/// such backend or it lacks one of `needs`.
pub fn device_for(test: &str, backend: Backend, needs: &[Requirement]) -> Option<Device> {
    let device = match backend {
        Backend::Cpu => Some(Device::cpu()),
        Backend::Gpu => gpu(),
        Backend::GpuNoSubgroups => match gpu() {
            None => None,
            Some(g) if !g.info().features.subgroup => {
                eprintln!(
                    "SKIPPED {test}: {} has no subgroups, so the plain GPU test already ran the fallback",
                    g.info().name
                );
                return None;
            }
            Some(_) => gpu_without_subgroups(),
        },
    };
    let Some(device) = device else {
        eprintln!("SKIPPED {test}: no {backend:?} device on this machine");
        return None;
    };
    for need in needs {
        if let Some(why) = need.missing_on(&device) {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
    }
    Some(device)
}

/// One test per backend from one body, so a failure on one backend does not hide the
/// others and `cargo test softmax_rows_cpu` runs one:
///
/// ```ignore
/// fn softmax_rows(device: &Device) { /* asserts */ }
/// backend_tests!(softmax_rows => softmax_rows_cpu, softmax_rows_gpu, softmax_rows_gpu_nosubgroups);
/// // with requirements, checked per device and skipped loudly where missing:
/// backend_tests!(coop_sweep [Requirement::CoopMatrix16] => coop_sweep_cpu, coop_sweep_gpu, coop_sweep_gpu_nosubgroups);
/// // a kernel with no subgroup form: only the CPU and GPU tests
/// backend_tests!(rope_positions => rope_positions_cpu, rope_positions_gpu);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($body:ident $([$($need:expr),* $(,)?])? => $cpu:ident, $gpu:ident, $plain:ident) => {
        #[test]
        fn $cpu() {
            if let Some(d) = $crate::common::device_for(stringify!($cpu), $crate::common::Backend::Cpu, &[$($($need),*)?]) {
                $body(&d);
            }
        }
        #[test]
        fn $gpu() {
            if let Some(d) = $crate::common::device_for(stringify!($gpu), $crate::common::Backend::Gpu, &[$($($need),*)?]) {
                $body(&d);
            }
        }
        #[test]
        fn $plain() {
            if let Some(d) = $crate::common::device_for(stringify!($plain), $crate::common::Backend::GpuNoSubgroups, &[$($($need),*)?]) {
                $body(&d);
            }
        }
    };
    // Kernels with no subgroup form: the CPU and the GPU only.
    ($body:ident $([$($need:expr),* $(,)?])? => $cpu:ident, $gpu:ident) => {
        #[test]
        fn $cpu() {
            if let Some(d) = $crate::common::device_for(stringify!($cpu), $crate::common::Backend::Cpu, &[$($($need),*)?]) {
                $body(&d);
            }
        }
        #[test]
        fn $gpu() {
            if let Some(d) = $crate::common::device_for(stringify!($gpu), $crate::common::Backend::Gpu, &[$($($need),*)?]) {
                $body(&d);
            }
        }
    };
}

/// Runs `test` of this test binary in a child process under an address-space limit of
/// `kib` KiB (`ulimit -v`, Linux), with `env` set, and returns its exit status and its
/// stdout + stderr. Passes `--ignored` so a child-only test can stay ignored in the
/// parent's run.
pub fn run_test_under_memory_limit(
    test: &str,
    kib: u64,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {kib} && exec \"$0\" --include-ignored --exact {test} --nocapture --test-threads=1"
        ))
        .arg(&exe)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}
