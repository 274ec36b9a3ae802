//! The native CPU backend: the same ops in Rust, multithreaded with rayon.

pub(crate) mod cast;
pub(crate) mod elementwise;
pub(crate) mod matmul;
pub mod probe;

use crate::device::{DeviceFeatures, DeviceInfo, DeviceLimits, DeviceType};
use crate::dtype::{DType, Element};
use half::{bf16, f16};

/// Elements below which CPU kernels stay on one thread (spawning costs more).
pub(crate) const PARALLEL_MIN: usize = 1 << 15;

pub(crate) struct CpuContext {
    threads: usize,
}

impl CpuContext {
    pub(crate) fn new() -> Self {
        CpuContext {
            threads: rayon::current_num_threads(),
        }
    }

    pub(crate) fn info(&self) -> DeviceInfo {
        let name = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let mut simd = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                simd.push("avx2");
            }
            if is_x86_feature_detected!("fma") {
                simd.push("fma");
            }
            if is_x86_feature_detected!("avx512f") {
                simd.push("avx512f");
            }
        }
        DeviceInfo {
            name,
            backend: "cpu".into(),
            device_type: DeviceType::Cpu,
            driver: format!("openkern native ({})", simd.join("+")),
            limits: DeviceLimits {
                max_storage_buffer_binding_size: u64::MAX,
                max_buffer_size: u64::MAX,
                max_compute_invocations_per_workgroup: 0,
                max_compute_workgroup_storage_size: 0,
                max_compute_workgroups_per_dimension: 0,
            },
            features: DeviceFeatures::default(),
            threads: self.threads,
            notes: Vec::new(),
        }
    }
}

/// Host storage of a CPU tensor.
pub(crate) enum CpuStorage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl CpuStorage {
    pub(crate) fn from_slice<T: Element>(data: &[T]) -> Self {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        match T::DTYPE {
            DType::F32 => CpuStorage::F32(bytemuck::pod_collect_to_vec(bytes)),
            DType::F16 => CpuStorage::F16(bytemuck::pod_collect_to_vec(bytes)),
            DType::BF16 => CpuStorage::BF16(bytemuck::pod_collect_to_vec(bytes)),
        }
    }

    pub(crate) fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    /// The data as `T`; the caller has checked that `T` matches.
    pub(crate) fn as_slice<T: Element>(&self) -> &[T] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F16(v) => bytemuck::cast_slice(v),
            CpuStorage::BF16(v) => bytemuck::cast_slice(v),
        }
    }

    /// The data widened to f32 (borrowed when already f32).
    pub(crate) fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            CpuStorage::F32(v) => std::borrow::Cow::Borrowed(v),
            CpuStorage::F16(v) => std::borrow::Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            CpuStorage::BF16(v) => std::borrow::Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// Storage of `dtype` from f32 results, rounding to nearest even.
    pub(crate) fn from_f32(dtype: DType, v: Vec<f32>) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(v),
            DType::F16 => CpuStorage::F16(v.into_iter().map(f16::from_f32).collect()),
            DType::BF16 => CpuStorage::BF16(v.into_iter().map(bf16::from_f32).collect()),
        }
    }
}
