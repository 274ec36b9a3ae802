//! Element types and the host types that carry them.

use half::{bf16, f16};
use std::fmt;

/// The element type of a tensor. Arithmetic always accumulates in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (stored packed two per 32-bit word on the GPU).
    F16,
    /// bfloat16: the top half of an f32 (stored packed two per word on the GPU).
    BF16,
    /// Unsigned 32-bit integers: token ids and argmax results. Only index-taking ops
    /// accept it (embedding ids, argmax output); float ops refuse it with
    /// [`Error::UnsupportedDType`](crate::Error::UnsupportedDType).
    U32,
}

impl DType {
    /// All float dtypes, for sweeps (the dtypes arithmetic ops take).
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Every dtype, index type included.
    pub const ALL_WITH_INDEX: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::U32];

    /// True for f32, f16 and bf16.
    pub const fn is_float(self) -> bool {
        !matches!(self, DType::U32)
    }

    /// Bytes per element.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Lower-case name as used in kernel keys and benchmark tables.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }

    /// The Rust element type that reads this dtype (`to_vec::<T>()`), as written in code.
    pub(crate) const fn rust_type(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "half::f16",
            DType::BF16 => "half::bf16",
            DType::U32 => "u32",
        }
    }

    pub(crate) const fn variant_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U32 => "U32",
        }
    }

    /// Unit roundoff of the storage format (half an ulp at 1.0): the natural scale of
    /// tolerances for this dtype (0 for the exact integer type).
    pub const fn epsilon(self) -> f64 {
        match self {
            DType::F32 => 5.960_464_477_539_063e-8,
            DType::F16 => 4.882_812_5e-4,
            DType::BF16 => 3.906_25e-3,
            DType::U32 => 0.0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host type that can fill or receive a tensor: `f32`, `half::f16`, `half::bf16`, `u32`.
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The dtype this host type carries.
    const DTYPE: DType;
    /// Widen to f32 (exact).
    fn to_f32(self) -> f32;
    /// Narrow from f32, rounding to nearest even.
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
    /// Exact below 2^24.
    fn to_f32(self) -> f32 {
        self as f32
    }
    /// Truncates toward zero, saturating (NaN gives 0).
    fn from_f32(v: f32) -> Self {
        v as u32
    }
}
