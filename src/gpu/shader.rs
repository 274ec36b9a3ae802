//! WGSL sources and their typed headers.
//!
//! Every kernel in `shaders/` is valid WGSL on its own: it opens with a default header
//! (all tensors f32) between the lines `// #header` and `// #end header`. The header
//! declares each tensor binding and its accessors (`load_x(i)`, `load2_x(w)`,
//! `store_y(i, v)`, `store2_y(w, v)`), always in f32. The launcher swaps that block for
//! one built by [`ShaderHeader`] from the call's dtypes; the kernel body never changes.
//! Other variants (tile sizes, op codes) come through WGSL `override` constants.
//!
//! Code several kernels share (the row reductions, the activation epilogue, the matmul
//! params and batch walk, online softmax) is written once as a [`Piece`] in
//! `shaders/common/`. A kernel that uses a piece keeps an identical inline copy between
//! `// #piece NAME` and `// #end piece NAME`, so the file stays valid WGSL on its own,
//! and names the piece in [`KernelSource::pieces`]; tests/shaders.rs fails when a copy
//! drifts. [`KernelSource::specialise`] is the one place that assembles a variant: the
//! `enable` lines, the typed header, and each piece (or its swap, e.g. the subgroup
//! reductions).
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
    /// Shared pieces the file carries inline between `// #piece` markers.
    pub pieces: &'static [&'static Piece],
    /// Pieces replaced by another in this variant: `(carried, used instead)`.
    pub swaps: &'static [(&'static Piece, &'static Piece)],
    /// The Rust mirror of the kernel's uniform `Params` struct, checked against the WGSL
    /// layout by tests/shaders.rs; `None` for a kernel without a uniform.
    pub params: Option<&'static ParamsLayout>,
}

/// Kernels whose bodies only move values (no arithmetic, no element type named: `vec2(..)`
/// takes it from the accessors), so they also take a u32 header and copy u32 tensors bit
/// for bit; [`KernelSource::headers`] lists their u32 variant.
pub const VALUE_MOVING_KERNELS: &[&str] = &["layout"];

/// The swap that turns a row kernel into its subgroup form.
const SUBGROUP_REDUCTIONS: &[(&Piece, &Piece)] =
    &[(&pieces::ROW_REDUCE, &pieces::ROW_REDUCE_SUBGROUP)];

/// A piece of WGSL several kernels share, written once in `shaders/common/`.
#[derive(Debug)]
pub struct Piece {
    /// The file stem in `shaders/common/`, and the name in the `// #piece` markers.
    pub name: &'static str,
    /// The canonical text: what every inline copy must equal.
    pub source: &'static str,
}

macro_rules! piece {
    ($name:literal) => {
        Piece {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/common/",
                $name,
                ".wgsl"
            )),
        }
    };
}

/// Every shared piece, one per file in `shaders/common/`.
pub mod pieces {
    use super::Piece;

    /// Workgroup reductions through shared memory (`reduce_init`, `wg_sum`, `wg_max`, ...).
    pub static ROW_REDUCE: Piece = piece!("row_reduce");
    /// The same interface through subgroup operations, swapped in on SUBGROUP adapters.
    pub static ROW_REDUCE_SUBGROUP: Piece = piece!("row_reduce_subgroup");
    /// `erfc_pos` and `activate(x, code)`: the activations by their one numeric code.
    pub static ACTIVATION: Piece = piece!("activation");
    /// The uniform `Params` every matmul kernel takes (`MatmulParams` in Rust).
    pub static MATMUL_PARAMS: Piece = piece!("matmul_params");
    /// `batch_offsets`: a flat batch index to A and B offsets under broadcasting.
    pub static MATMUL_BATCH_OFFSETS: Piece = piece!("matmul_batch_offsets");
    /// `emit`: the cooperative-matrix kernels' epilogue of one staged CT×CT tile.
    pub static MATMUL_COOP_EMIT: Piece = piece!("matmul_coop_emit");
    /// `a_pair`, `w_pair` and `finish` of the GEMV kernels, with K and A's strides read
    /// once per invocation (`read_pair_params`).
    pub static GEMV_PAIRS: Piece = piece!("gemv_pairs");
    /// f32 to f16 bits with round-to-nearest-even, NaN and overflow kept (header writers).
    pub static PACK_F16: Piece = piece!("pack_f16");
    /// f32 to bf16 bits with round-to-nearest-even, NaN kept (header writers).
    pub static PACK_BF16: Piece = piece!("pack_bf16");

    /// The attention kernels' `Params`, fault word, key range and masks.
    pub static ATTENTION_COMMON: Piece = piece!("attention_common");
    /// Online-softmax state `(max, sum)` updates and merges (attention).
    pub static ONLINE_SOFTMAX: Piece = piece!("online_softmax");
    /// `write_words`: a lane's words of a row, 8 per loop iteration (lavapipe's loop
    /// budget), through the kernel's `write_word` (softmax, norms).
    pub static ROW_WRITE_WALK: Piece = piece!("row_write_walk");

    /// All of them, for the drift test.
    pub static ALL: &[&Piece] = &[
        &ROW_REDUCE,
        &ROW_REDUCE_SUBGROUP,
        &ACTIVATION,
        &MATMUL_PARAMS,
        &MATMUL_BATCH_OFFSETS,
        &MATMUL_COOP_EMIT,
        &GEMV_PAIRS,
        &PACK_F16,
        &PACK_BF16,
        &ATTENTION_COMMON,
        &ONLINE_SOFTMAX,
        &ROW_WRITE_WALK,
    ];
}

/// A uniform params struct as Rust lays it out, for the test that compares it with the
/// WGSL struct naga reads from the kernel. Made by [`uniform_params!`].
#[derive(Debug)]
pub struct ParamsLayout {
    /// The Rust type's name, for messages.
    pub rust_name: &'static str,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// Each field's name and byte offset, in declaration order.
    pub fields: &'static [(&'static str, usize)],
}

/// Declares a kernel's uniform params struct once: `#[repr(C)]`, `Pod`, and a
/// `LAYOUT` constant the shader test checks against the WGSL `Params` through naga.
macro_rules! uniform_params {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $(pub(crate) $field: $ty),*
        }

        impl $name {
            /// The layout the shader test compares with the WGSL struct.
            pub(crate) const LAYOUT: $crate::gpu::shader::ParamsLayout =
                $crate::gpu::shader::ParamsLayout {
                    rust_name: stringify!($name),
                    size: std::mem::size_of::<$name>(),
                    fields: &[$((stringify!($field), std::mem::offset_of!($name, $field))),*],
                };
        }
    };
}
pub(crate) use uniform_params;

/// The typed header of one kernel variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShaderHeader {
    /// Dtype of each tensor binding, in the kernel's binding order.
    pub dtypes: Vec<DType>,
    /// Bit `slot` set: that read binding is declared in 16-byte elements, so its
    /// `load8_x(o)` (elements 8o..8o+7) is two 16-byte loads in f32 and one in 16-bit
    /// dtypes instead of eight or four 4-byte ones. On llvmpipe every storage load is a
    /// loop over the SIMD row's lanes, which a vec4 load shares among its four
    /// components (lavapipe, GEMV 1×4096×4096, fastest of 60: f32 16.0 → 7.5 ms). A
    /// kernel that names `load8_x` gets the accessor either way; the launcher sets the
    /// bit where the binding's offset and every index the kernel passes are multiples
    /// of 16 bytes, so the 16-byte elements cover the tensor.
    pub quads: u32,
}

impl ShaderHeader {
    /// The header for the given dtypes (one per tensor binding).
    pub fn new(dtypes: Vec<DType>) -> Self {
        ShaderHeader { dtypes, quads: 0 }
    }

    /// The same header with read binding `slot` declared in 16-byte elements (see
    /// [`quads`](Self::quads)).
    pub fn with_quads(mut self, slot: usize) -> Self {
        self.quads |= 1 << slot;
        self
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
            h.push_str(pieces::PACK_F16.source);
        }
        if writes(DType::BF16) {
            h.push_str(pieces::PACK_BF16.source);
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
                // u32 data in a value binding (a copy kernel's x, y): the pair accessors
                // too, in u32, so a body that never names the element type compiles
                let _ = match t.access {
                    Access::Read => writeln!(
                        h,
                        "fn load2_{n}(w: u32) -> vec2<u32> {{ return vec2<u32>({n}[2u * w], {n}[2u * w + 1u]); }}"
                    ),
                    Access::Write => writeln!(
                        h,
                        "fn store2_{n}(w: u32, v: vec2<u32>) {{ {n}[2u * w] = v.x; {n}[2u * w + 1u] = v.y; }}"
                    ),
                    Access::IndexRead | Access::IndexWrite => Ok(()),
                };
                continue;
            }
            let quad = self.quads & (1 << slot) != 0;
            if quad && t.access == Access::Read {
                h.push_str(&quad_binding(slot, n, dt));
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
                     fn load2_{n}(w: u32) -> vec2<f32> {{ let p = {n}[w]; return {}; }}\n",
                    pair_expr(DType::BF16)
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
            if t.access == Access::Read && kernel.source.contains(&format!("load8_{n}(")) {
                let _ = writeln!(h, "{}", load8_by_words(n, dt));
            }
        }
        h
    }
}

/// Whether `t` can be bound in 16-byte elements for a kernel reading runs of eight
/// elements that start at multiples of each of `strides` (a row length, row and batch
/// strides): every stride a multiple of 8 elements and the binding 16-byte aligned, so
/// each run is whole 16-byte units (8-byte ones in 16-bit dtypes) inside the tensor (see
/// [`ShaderHeader::quads`]).
pub(crate) fn octets_fit(
    t: &crate::tensor::Tensor,
    strides: impl IntoIterator<Item = usize>,
) -> bool {
    t.byte_offset().is_multiple_of(16) && strides.into_iter().all(|s| s.is_multiple_of(8))
}

/// The f32 pair in the 32-bit word `p` of a 16-bit binding, as a WGSL expression.
fn pair_expr(dt: DType) -> &'static str {
    if dt == DType::F16 {
        "unpack2x16float(p)"
    } else {
        "vec2<f32>(bitcast<f32>(p << 16u), bitcast<f32>(p & 0xffff0000u))"
    }
}

/// `load8_{n}` over a binding in 4-byte words: eight f32 loads, or four words of 16-bit
/// pairs.
fn load8_by_words(n: &str, dt: DType) -> String {
    match dt {
        DType::F16 | DType::BF16 => format!(
            "fn load8_{n}(o: u32) -> array<vec4<f32>, 2> {{ let w = 4u * o; return array<vec4<f32>, 2>(vec4<f32>(load2_{n}(w), load2_{n}(w + 1u)), vec4<f32>(load2_{n}(w + 2u), load2_{n}(w + 3u))); }}"
        ),
        _ => format!(
            "fn load8_{n}(o: u32) -> array<vec4<f32>, 2> {{ let i = 8u * o; return array<vec4<f32>, 2>(vec4<f32>({n}[i], {n}[i + 1u], {n}[i + 2u], {n}[i + 3u]), vec4<f32>({n}[i + 4u], {n}[i + 5u], {n}[i + 6u], {n}[i + 7u])); }}"
        ),
    }
}

/// A read binding declared in 16-byte elements (`vec4<f32>`, or `vec4<u32>` holding
/// eight 16-bit values), with the scalar, pair and octet accessors over it.
fn quad_binding(slot: usize, n: &str, dt: DType) -> String {
    let decl =
        |elem: &str| format!("@group(0) @binding({slot}) var<storage, read> {n}: array<{elem}>;\n");
    match dt {
        DType::F16 | DType::BF16 => {
            let pair = pair_expr(dt);
            format!(
                "{}fn pair_{n}(p: u32) -> vec2<f32> {{ return {pair}; }}\n\
                 fn load_{n}(i: u32) -> f32 {{ return pair_{n}({n}[i >> 3u][(i >> 1u) & 3u])[i & 1u]; }}\n\
                 fn load2_{n}(w: u32) -> vec2<f32> {{ return pair_{n}({n}[w >> 2u][w & 3u]); }}\n\
                 fn load8_{n}(o: u32) -> array<vec4<f32>, 2> {{ let p = {n}[o]; return array<vec4<f32>, 2>(vec4<f32>(pair_{n}(p.x), pair_{n}(p.y)), vec4<f32>(pair_{n}(p.z), pair_{n}(p.w))); }}\n",
                decl("vec4<u32>")
            )
        }
        _ => format!(
            "{}fn load_{n}(i: u32) -> f32 {{ return {n}[i >> 2u][i & 3u]; }}\n\
             fn load2_{n}(w: u32) -> vec2<f32> {{ let v = {n}[w >> 1u]; return select(v.zw, v.xy, (w & 1u) == 0u); }}\n\
             fn load8_{n}(o: u32) -> array<vec4<f32>, 2> {{ return array<vec4<f32>, 2>({n}[2u * o], {n}[2u * o + 1u]); }}\n",
            decl("vec4<f32>")
        ),
    }
}

const HEADER_BEGIN: &str = "// #header";
const HEADER_END: &str = "// #end header";
const PIECE_BEGIN: &str = "// #piece ";
const PIECE_END: &str = "// #end piece ";

/// One `// #piece NAME` block in a kernel file.
#[derive(Debug, Clone, Copy)]
pub struct PieceBlock<'s> {
    /// The piece's name.
    pub name: &'s str,
    /// The inline copy between the marker lines.
    pub text: &'s str,
    /// Byte range of the whole block, marker lines included.
    pub range: (usize, usize),
}

/// The `// #piece` blocks of `source`, in order; an error names a block whose end
/// marker is missing.
pub fn piece_blocks(source: &str) -> std::result::Result<Vec<PieceBlock<'_>>, String> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while let Some(found) = source[at..].find(PIECE_BEGIN) {
        let start = at + found;
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |e| start + e + 1);
        let name = source[start + PIECE_BEGIN.len()..line_end].trim();
        let end_marker = format!("{PIECE_END}{name}\n");
        let Some(end) = source[line_end..].find(&end_marker) else {
            return Err(format!(
                "`{PIECE_BEGIN}{name}` has no `{}`",
                end_marker.trim()
            ));
        };
        let text_end = line_end + end;
        blocks.push(PieceBlock {
            name,
            text: &source[line_end..text_end],
            range: (start, text_end + end_marker.len()),
        });
        at = text_end + end_marker.len();
    }
    Ok(blocks)
}

impl KernelSource {
    /// The kernel variant's WGSL, assembled in one place: the `enable` lines, the default
    /// header replaced by `header`, and every `// #piece` block filled from its canonical
    /// piece (or the piece [`swaps`](Self::swaps) puts in its place).
    pub fn specialise(&self, header: &ShaderHeader) -> String {
        let mut out = String::with_capacity(self.source.len() + 2048);
        for e in self.enables {
            let _ = writeln!(out, "enable {e};");
        }
        let body = match (self.source.find(HEADER_BEGIN), self.source.find(HEADER_END)) {
            (Some(begin), Some(end)) => {
                let mut s = String::with_capacity(self.source.len() + 1024);
                s.push_str(&self.source[..begin]);
                s.push_str(HEADER_BEGIN);
                s.push('\n');
                s.push_str(&header.render(self));
                s.push_str(&self.source[end..]);
                s
            }
            _ => self.source.to_string(),
        };
        let Ok(blocks) = piece_blocks(&body) else {
            // a malformed marker is reported by the drift test; compile the file as written
            out.push_str(&body);
            return out;
        };
        let mut at = 0;
        for block in blocks {
            let canonical = self.pieces.iter().find(|p| p.name == block.name);
            let swapped = self
                .swaps
                .iter()
                .find(|(from, _)| from.name == block.name)
                .map(|&(_, to)| to);
            out.push_str(&body[at..block.range.0]);
            match (swapped, canonical) {
                (Some(to), _) => {
                    let _ = writeln!(out, "{PIECE_BEGIN}{} ({})", block.name, to.name);
                    out.push_str(to.source);
                    let _ = writeln!(out, "{PIECE_END}{}", block.name);
                }
                (None, Some(p)) => {
                    let _ = writeln!(out, "{PIECE_BEGIN}{}", block.name);
                    out.push_str(p.source);
                    let _ = writeln!(out, "{PIECE_END}{}", block.name);
                }
                (None, None) => out.push_str(&body[block.range.0..block.range.1]),
            }
            at = block.range.1;
        }
        out.push_str(&body[at..]);
        out
    }

    /// This kernel with its row reductions swapped for the subgroup form, under `name`:
    /// same bindings, entry points and variants.
    pub const fn subgroup_twin(self, name: &'static str) -> KernelSource {
        KernelSource {
            name,
            swaps: SUBGROUP_REDUCTIONS,
            ..self
        }
    }

    /// Every dtype assignment the launchers can ask for: float bindings take each float
    /// dtype (all the same one unless `mixed_dtypes`; u32 too for the
    /// [`VALUE_MOVING_KERNELS`]), index bindings are always u32.
    pub fn headers(&self) -> Vec<ShaderHeader> {
        let choices = |t: &TensorBinding| -> Vec<DType> {
            if t.access.is_index() {
                vec![DType::U32]
            } else {
                DType::ALL.to_vec()
            }
        };
        if !self.mixed_dtypes {
            let dtypes: &[DType] = if VALUE_MOVING_KERNELS.contains(&self.name) {
                &DType::ALL_WITH_INDEX
            } else {
                &DType::ALL
            };
            let plain = dtypes
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
            return self.with_quad_headers(plain);
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
        self.with_quad_headers(all.into_iter().map(ShaderHeader::new).collect())
    }

    /// `plain` and, for every read binding the kernel names `load8_x` of, each header
    /// with that binding declared in 16-byte elements (and all of them at once).
    fn with_quad_headers(&self, plain: Vec<ShaderHeader>) -> Vec<ShaderHeader> {
        let quad_slots: Vec<usize> = self
            .tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.access == Access::Read && self.source.contains(&format!("load8_{}(", t.name))
            })
            .map(|(slot, _)| slot)
            .collect();
        let mut out = plain.clone();
        for &slot in &quad_slots {
            out.extend(plain.iter().map(|h| h.clone().with_quads(slot)));
        }
        if quad_slots.len() > 1 {
            out.extend(plain.iter().map(|h| {
                quad_slots
                    .iter()
                    .fold(h.clone(), |h, &slot| h.with_quads(slot))
            }));
        }
        out
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
