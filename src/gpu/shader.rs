//! WGSL sources and their typed headers.
//!
//! Every kernel in `shaders/` is valid WGSL on its own: it opens with a default header
//! (all tensors f32) between the lines `// #header` and `// #end header`. The header
//! declares each tensor binding and its accessors (`load_x(i)`, `load2_x(w)`,
//! `store_y(i, v)`, `store2_y(w, v)`), always in f32. The launcher swaps that block for
//! one built by [`ShaderHeader`] from the call's dtypes; the kernel body never changes.
//! Other variants (tile sizes, op codes) come through WGSL `override` constants.
//!
//! 16-bit tensors are stored packed, two per `u32`, so they work on adapters without
//! SHADER_F16. Reads unpack; whole-word writes (`store2_*`) are plain stores, single
//! element writes (`store_*`) use two atomics so neighbouring invocations that own the
//! two halves of one word cannot lose each other's write.

use crate::dtype::DType;
use std::fmt::Write;

/// Whether a kernel reads or writes a tensor binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
    /// A u32 index tensor (token ids), read: `load_<name>(i) -> u32`. Always
    /// [`DType::U32`], whatever the header's dtype for this slot says.
    IndexRead,
    /// A u32 index tensor (argmax results), written: `store_<name>(i, v: u32)`.
    /// Always [`DType::U32`].
    IndexWrite,
}

impl Access {
    /// True for the u32 index bindings.
    pub const fn is_index(self) -> bool {
        matches!(self, Access::IndexRead | Access::IndexWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::IndexWrite)
    }
}

/// One tensor binding a kernel declares, in binding order.
#[derive(Debug, Clone, Copy)]
pub struct TensorBinding {
    /// The WGSL name; accessors are `load_<name>` / `store_<name>`.
    pub name: &'static str,
    /// Read or written.
    pub access: Access,
}

impl TensorBinding {
    /// A tensor the kernel reads.
    pub const fn read(name: &'static str) -> Self {
        TensorBinding {
            name,
            access: Access::Read,
        }
    }

    /// A tensor the kernel writes.
    pub const fn write(name: &'static str) -> Self {
        TensorBinding {
            name,
            access: Access::Write,
        }
    }

    /// A u32 index tensor the kernel reads.
    pub const fn index_read(name: &'static str) -> Self {
        TensorBinding {
            name,
            access: Access::IndexRead,
        }
    }

    /// A u32 index tensor the kernel writes.
    pub const fn index_write(name: &'static str) -> Self {
        TensorBinding {
            name,
            access: Access::IndexWrite,
        }
    }
}

/// A kernel family: one file in `shaders/`.
#[derive(Debug)]
pub struct KernelSource {
    /// The file's stem, used in pipeline keys and error messages.
    pub name: &'static str,
    /// The WGSL, default header included.
    pub source: &'static str,
    /// Entry points the launcher uses.
    pub entry_points: &'static [&'static str],
    /// Tensor bindings in binding order; the uniform `params` follows at the next index,
    /// then, for a kernel that reports bad input, the device's fault word.
    pub tensors: &'static [TensorBinding],
    /// True where tensors may have different dtypes (casts); otherwise all share one.
    pub mixed_dtypes: bool,
    /// `enable` directives the kernel needs beyond the header's.
    pub enables: &'static [&'static str],
    /// Override-constant sets the launchers use, validated by the portability test.
    pub specialisations: &'static [&'static [(&'static str, f64)]],
}

/// The typed header of one kernel variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShaderHeader {
    /// Dtype of each tensor binding, in the kernel's binding order.
    pub dtypes: Vec<DType>,
}

const F16_BITS: &str = "\
fn ok_f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return 0x7e00u; }
    if (abs(v) >= 65520.0) { return ((b >> 16u) & 0x8000u) | 0x7c00u; }
    return pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu;
}
";

const BF16_BITS: &str = "\
fn ok_bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { return 0x7fc0u; }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
";

impl ShaderHeader {
    /// The header for the given dtypes (one per tensor binding).
    pub fn new(dtypes: Vec<DType>) -> Self {
        ShaderHeader { dtypes }
    }

    /// Renders the header for `kernel`.
    pub fn render(&self, kernel: &KernelSource) -> String {
        let mut h = String::new();
        let writes = |d: DType| {
            kernel
                .tensors
                .iter()
                .zip(&self.dtypes)
                .any(|(t, &dt)| t.access == Access::Write && dt == d)
        };
        if writes(DType::F16) {
            h.push_str(F16_BITS);
        }
        if writes(DType::BF16) {
            h.push_str(BF16_BITS);
        }
        for (slot, (t, &dt)) in kernel.tensors.iter().zip(&self.dtypes).enumerate() {
            let n = t.name;
            if t.access.is_index() || dt == DType::U32 {
                let access = if t.access.writes() {
                    "read_write"
                } else {
                    "read"
                };
                let _ = writeln!(
                    h,
                    "@group(0) @binding({slot}) var<storage, {access}> {n}: array<u32>;"
                );
                let _ = if t.access.writes() {
                    writeln!(h, "fn store_{n}(i: u32, v: u32) {{ {n}[i] = v; }}")
                } else {
                    writeln!(h, "fn load_{n}(i: u32) -> u32 {{ return {n}[i]; }}")
                };
                continue;
            }
            let (access, elem) = match (t.access, dt) {
                (Access::Read, DType::F32) => ("read", "f32"),
                (Access::Read, _) => ("read", "u32"),
                (Access::Write, DType::F32) => ("read_write", "f32"),
                (Access::Write, _) => ("read_write", "atomic<u32>"),
                (Access::IndexRead | Access::IndexWrite, _) => unreachable!("rendered above"),
            };
            let _ = writeln!(
                h,
                "@group(0) @binding({slot}) var<storage, {access}> {n}: array<{elem}>;"
            );
            let body = match (t.access, dt) {
                (Access::Read, DType::F32) => format!(
                    "fn load_{n}(i: u32) -> f32 {{ return {n}[i]; }}\n\
                     fn load2_{n}(w: u32) -> vec2<f32> {{ return vec2<f32>({n}[2u * w], {n}[2u * w + 1u]); }}\n"
                ),
                (Access::Read, DType::F16) => format!(
                    "fn load_{n}(i: u32) -> f32 {{ return unpack2x16float({n}[i >> 1u])[i & 1u]; }}\n\
                     fn load2_{n}(w: u32) -> vec2<f32> {{ return unpack2x16float({n}[w]); }}\n"
                ),
                (Access::Read, DType::BF16) => format!(
                    "fn load_{n}(i: u32) -> f32 {{ return bitcast<f32>((({n}[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu) << 16u); }}\n\
                     fn load2_{n}(w: u32) -> vec2<f32> {{ let p = {n}[w]; return vec2<f32>(bitcast<f32>(p << 16u), bitcast<f32>(p & 0xffff0000u)); }}\n"
                ),
                (Access::Write, DType::F32) => format!(
                    "fn store_{n}(i: u32, v: f32) {{ {n}[i] = v; }}\n\
                     fn store2_{n}(w: u32, v: vec2<f32>) {{ {n}[2u * w] = v.x; {n}[2u * w + 1u] = v.y; }}\n"
                ),
                (Access::IndexRead | Access::IndexWrite, _) | (_, DType::U32) => {
                    unreachable!("rendered above")
                }
                (Access::Write, half) => {
                    let bits = if half == DType::F16 { "ok_f16_bits" } else { "ok_bf16_bits" };
                    format!(
                        "fn store_{n}(i: u32, v: f32) {{\n    let shift = (i & 1u) * 16u;\n    atomicAnd(&{n}[i >> 1u], ~(0xffffu << shift));\n    atomicOr(&{n}[i >> 1u], {bits}(v) << shift);\n}}\n\
                         fn store2_{n}(w: u32, v: vec2<f32>) {{ atomicStore(&{n}[w], {bits}(v.x) | ({bits}(v.y) << 16u)); }}\n"
                    )
                }
            };
            h.push_str(&body);
        }
        h
    }
}

const HEADER_BEGIN: &str = "// #header";
const HEADER_END: &str = "// #end header";

impl KernelSource {
    /// The kernel's WGSL with its default header replaced by `header`.
    pub fn specialise(&self, header: &ShaderHeader) -> String {
        let begin = self.source.find(HEADER_BEGIN);
        let end = self.source.find(HEADER_END);
        let (Some(begin), Some(end)) = (begin, end) else {
            return self.source.to_string();
        };
        let mut out = String::with_capacity(self.source.len() + 1024);
        for e in self.enables {
            let _ = writeln!(out, "enable {e};");
        }
        out.push_str(&self.source[..begin]);
        out.push_str(HEADER_BEGIN);
        out.push('\n');
        out.push_str(&header.render(self));
        out.push_str(&self.source[end..]);
        out
    }

    /// Every dtype assignment the launchers can ask for: float bindings take each float
    /// dtype (all the same one unless `mixed_dtypes`), index bindings are always u32.
    pub fn headers(&self) -> Vec<ShaderHeader> {
        let choices = |t: &TensorBinding| -> Vec<DType> {
            if t.access.is_index() {
                vec![DType::U32]
            } else {
                DType::ALL.to_vec()
            }
        };
        if !self.mixed_dtypes {
            return DType::ALL
                .iter()
                .map(|&d| {
                    ShaderHeader::new(
                        self.tensors
                            .iter()
                            .map(|t| if t.access.is_index() { DType::U32 } else { d })
                            .collect(),
                    )
                })
                .collect();
        }
        let mut all = vec![Vec::new()];
        for t in self.tensors {
            let options = choices(t);
            all = all
                .into_iter()
                .flat_map(|prefix: Vec<DType>| {
                    options.iter().map(move |&d| {
                        let mut v = prefix.clone();
                        v.push(d);
                        v
                    })
                })
                .collect();
        }
        all.into_iter().map(ShaderHeader::new).collect()
    }
}

macro_rules! kernel_file {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/",
            $name,
            ".wgsl"
        ))
    };
}
pub(crate) use kernel_file;

const REDUCE_BEGIN: &str = "// #reduce";
const REDUCE_END: &str = "// #end reduce";

/// The subgroup form of the workgroup reductions, swapped in for a kernel's
/// `// #reduce` block on adapters with SUBGROUP.
pub(crate) const REDUCE_SUBGROUP: &str = kernel_file!("reduce_subgroup");

/// `source` with its `// #reduce` .. `// #end reduce` block (the shared-memory
/// reductions every row kernel carries, so the file is valid WGSL alone) replaced by the
/// subgroup form in `shaders/reduce_subgroup.wgsl`. Built once per kernel and leaked:
/// the result lives as long as the kernel table.
pub(crate) fn with_subgroup_reductions(source: &'static str) -> &'static str {
    let (Some(begin), Some(end)) = (source.find(REDUCE_BEGIN), source.find(REDUCE_END)) else {
        return source;
    };
    let mut out = String::with_capacity(source.len() + REDUCE_SUBGROUP.len());
    out.push_str(&source[..begin]);
    out.push_str(REDUCE_BEGIN);
    out.push_str(" (subgroup form)\n");
    out.push_str(REDUCE_SUBGROUP);
    out.push_str(&source[end..]);
    Box::leak(out.into_boxed_str())
}
