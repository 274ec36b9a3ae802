//! Fused scaled-dot-product attention (flash-attention style): `softmax(q·kᵀ·scale +
//! mask)·v` without ever materialising the `q_len × kv_len` score matrix.
//!
//! ```
//! use openkern::{ops, ops::attention::AttentionOptions, Device, Tensor};
//! # fn main() -> openkern::Result<()> {
//! let device = Device::cpu();
//! // batch 1, 2 query heads sharing 1 key/value head (grouped-query), 3 tokens, head_dim 4
//! let q = Tensor::from_slice(&device, &[0.1f32; 24], &[1, 2, 3, 4])?;
//! let k = Tensor::from_slice(&device, &[0.2f32; 12], &[1, 1, 3, 4])?;
//! let v = Tensor::from_slice(&device, &[1.0f32; 12], &[1, 1, 3, 4])?;
//! let causal = AttentionOptions { causal: true, ..Default::default() };
//! let out = ops::attention(&q, &k, &v, &causal)?;
//! assert_eq!(out.shape(), &[1, 2, 3, 4]);
//! # Ok(())
//! # }
//! ```
//!
//! **Shapes.** q is `[batch, q_heads, q_len, head_dim]`, k `[batch, kv_heads, kv_len,
//! head_dim]`, v `[batch, kv_heads, kv_len, v_dim]` (v's head dimension may differ), and
//! the output `[batch, q_heads, q_len, v_dim]`. With [`AttentionLayout::SeqFirst`] every
//! tensor is `[batch, len, heads, dim]` instead, the layout a linear projection produces;
//! the kernels take strides, so no permute copy is made. `q_heads` must be a multiple of
//! `kv_heads` (grouped-query attention; `kv_heads = 1` is multi-query): query head `h`
//! reads key/value head `h / (q_heads / kv_heads)`.
//!
//! **Which keys a query sees.** For query row `i` of batch entry `b`, with `len_b` the
//! valid key count (`kv_lengths[b]`, or `kv_len`) and `p = i + len_b − q_len` its position
//! aligned to the end of the keys, key `j` is visible when `j < len_b` and
//! - causal: `j ≤ p` (prefill `q_len = kv_len` gives the lower triangle; decode with
//!   `q_len = 1` sees the whole cache; chunked prefill sees the earlier chunks);
//! - window `w`: `j > p − w` (and, without causal, also `j < p + w`);
//!
//! and its logit is `s = scale·q·k`, then `cap·tanh(s/cap)` with a soft-cap, then
//! `+ mask[b, h, i, j]`. A row with no visible key (or only −∞ logits) gives **zeros**,
//! never NaN. Arithmetic is f32 whatever the storage dtype (f32, f16, bf16).
//!
//! Kernel choice is a value: [`describe`] says which kernel a call runs (the prefill
//! kernel, or split-KV flash-decoding for a few queries against a long cache) and which
//! form walks the keys on the GPU: K/V tiles in workgroup memory, or, on adapters with
//! SUBGROUP and one fixed subgroup size, the barrier-free subgroup kernel.
//!
//! A KV cache for decoding lives in [`crate::ops::kv_cache`].

use super::dispatch;
use crate::device::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::broadcast_strides;
use crate::tensor::Tensor;

/// How q, k, v and the output are laid out in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AttentionLayout {
    /// `[batch, heads, len, dim]` (PyTorch's `scaled_dot_product_attention` layout).
    #[default]
    HeadsFirst,
    /// `[batch, len, heads, dim]`: what `linear` produces after a reshape of its last
    /// dimension into `[heads, dim]`.
    SeqFirst,
}

/// Options for [`attention`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionOptions<'a> {
    /// Multiplies q·kᵀ; `None` for `1/√head_dim`. Must be finite and positive.
    pub scale: Option<f32>,
    /// Causal mask aligned to the end of the keys (see the module docs).
    pub causal: bool,
    /// Sliding window: a query at position `p` sees keys `j > p − window` (Mistral,
    /// Gemma local layers); without `causal` also `j < p + window`. `None` or `Some(0)`
    /// for no window.
    pub window: Option<usize>,
    /// Additive mask (0 to keep, −∞ or a large negative value to hide), f32 or the
    /// activations' dtype, broadcast to `[batch, q_heads, q_len, kv_len]`: rank 2 to 4,
    /// last dimension `kv_len`, every other dimension equal or 1.
    pub mask: Option<&'a Tensor>,
    /// Valid key count per batch entry (padding), a u32 tensor of shape `[batch]`, each
    /// at most `kv_len`. Keys at or past it are hidden and the causal/window positions
    /// align to it. On a GPU device a length past `kv_len` is clamped and reported as
    /// [`Error::KvLength`] by the next read or sync.
    pub kv_lengths: Option<&'a Tensor>,
    /// Logit soft-cap (Gemma 2): `s ← cap·tanh(s/cap)` before the mask. Must be finite
    /// and positive.
    pub softcap: Option<f32>,
    /// Memory layout of q, k, v and the output.
    pub layout: AttentionLayout,
}

/// Fused attention; see the module docs for shapes, masking and special rows.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions<'_>,
) -> Result<Tensor> {
    let plan = Plan::new(q, k, v, options, KvSource::Tensors(options.layout))?;
    run(q, k, v, &plan)
}

/// Which kernel [`attention`] would run for these operands on their device, as text
/// (e.g. `prefill(16 rows/workgroup, 4 lanes/row, 8 keys/tile)`, or on an adapter with
/// one fixed subgroup size `prefill(subgroup 8: 8 rows/subgroup, 8 subgroups/workgroup,
/// 64 keys/block)`, or `decode-split(16 splits of 256 keys, …) + merge`). Checks the call
/// exactly as [`attention`] does.
pub fn describe(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions<'_>,
) -> Result<String> {
    let plan = Plan::new(q, k, v, options, KvSource::Tensors(options.layout))?;
    Ok(match &q.device().inner.backend {
        Backend::Gpu(g) => {
            crate::gpu::attention::AttentionLaunch::select(g, q.device().info(), &plan)?.to_string()
        }
        Backend::Cpu => crate::cpu::attention::describe(&plan),
    })
}

/// Where k and v come from: whole tensors in the call's layout, or a cache's
/// preallocated `[batch, kv_heads, max_len, dim]` pair of which the first `len` rows are
/// valid (and, with `lengths`, per-batch valid counts on the device).
#[derive(Clone, Copy)]
pub(crate) enum KvSource<'a> {
    Tensors(AttentionLayout),
    Cache {
        len: usize,
        lengths: Option<&'a Tensor>,
    },
}

/// Strides (batch, head, row) of a `[batch, heads, len, dim]` tensor stored in `layout`,
/// in elements; the last dimension is contiguous.
fn strides(layout: AttentionLayout, heads: usize, len: usize, dim: usize) -> [usize; 3] {
    match layout {
        AttentionLayout::HeadsFirst => [heads * len * dim, len * dim, dim],
        AttentionLayout::SeqFirst => [len * heads * dim, dim, heads * dim],
    }
}

/// The checked call, shared by both backends.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub batch: usize,
    pub kv_heads: usize,
    /// q_heads / kv_heads.
    pub group: usize,
    pub q_len: usize,
    /// Keys the kernels may read (the valid prefix for a cache).
    pub kv_len: usize,
    pub head_dim: usize,
    pub v_dim: usize,
    pub scale: f32,
    /// 0 for none.
    pub softcap: f32,
    pub causal: bool,
    /// 0 for none.
    pub window: usize,
    /// An f32 or activation-dtype mask, with strides over (batch, q head, row); columns
    /// are contiguous.
    pub mask: Option<Tensor>,
    pub mask_strides: [usize; 3],
    /// u32 `[batch]` valid key counts.
    pub kv_lengths: Option<Tensor>,
    /// Element strides (batch, head, row) of each operand; the last dimension is
    /// contiguous.
    pub q_strides: [usize; 3],
    pub k_strides: [usize; 3],
    pub v_strides: [usize; 3],
    pub o_strides: [usize; 3],
    pub out_shape: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &AttentionOptions<'_>,
        kv: KvSource<'_>,
    ) -> Result<Plan> {
        let op = "attention";
        q.device().same(op, k.device())?;
        q.device().same(op, v.device())?;
        q.expect_float(op)?;
        for t in [k, v] {
            if t.dtype() != q.dtype() {
                return Err(Error::DTypeMismatch {
                    op,
                    lhs: q.dtype(),
                    rhs: t.dtype(),
                });
            }
        }
        let names = ["q", "k", "v"];
        for (t, name) in [q, k, v].iter().zip(names) {
            if t.rank() != 4 {
                return Err(Error::shape(
                    op,
                    format!(
                        "{name} has shape {:?}; it must have rank 4: [batch, heads, len, dim] (or [batch, len, heads, dim] with AttentionLayout::SeqFirst)",
                        t.shape()
                    ),
                ));
            }
        }
        let layout = o.layout;
        // (batch, heads, len, dim) whatever the layout
        let dims = |t: &Tensor, l: AttentionLayout| {
            let s = t.shape();
            match l {
                AttentionLayout::HeadsFirst => (s[0], s[1], s[2], s[3]),
                AttentionLayout::SeqFirst => (s[0], s[2], s[1], s[3]),
            }
        };
        let kv_layout = match kv {
            KvSource::Tensors(l) => l,
            KvSource::Cache { .. } => AttentionLayout::HeadsFirst,
        };
        let (batch, q_heads, q_len, head_dim) = dims(q, layout);
        let (kb, kv_heads, k_len, k_dim) = dims(k, kv_layout);
        let (vb, v_heads, v_len, v_dim) = dims(v, kv_layout);
        if kb != batch || vb != batch {
            return Err(Error::shape(
                op,
                format!(
                    "batch sizes differ: q {batch}, k {kb}, v {vb}; q, k and v must share the batch dimension"
                ),
            ));
        }
        if v_heads != kv_heads || v_len != k_len {
            return Err(Error::shape(
                op,
                format!(
                    "k has {kv_heads} heads × {k_len} keys but v has {v_heads} × {v_len}; k and v must agree in heads and length"
                ),
            ));
        }
        if kv_heads == 0 || q_heads % kv_heads != 0 {
            return Err(Error::AttentionHeads { q_heads, kv_heads });
        }
        if k_dim != head_dim {
            return Err(Error::HeadDim {
                q: head_dim,
                k: k_dim,
            });
        }
        if head_dim == 0 || v_dim == 0 {
            return Err(Error::shape(
                op,
                format!("head dimensions must be positive (q/k {head_dim}, v {v_dim})"),
            ));
        }
        let scale = o.scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::Argument {
                op,
                name: "scale",
                value: scale.to_string(),
                expected: "a finite positive number (None for 1/sqrt(head_dim))",
            });
        }
        let softcap = o.softcap.unwrap_or(0.0);
        if o.softcap.is_some() && !(softcap.is_finite() && softcap > 0.0) {
            return Err(Error::Argument {
                op,
                name: "softcap",
                value: softcap.to_string(),
                expected: "a finite positive cap (e.g. 50.0), or None",
            });
        }
        let (kv_len, k_strides, v_strides, lengths) = match kv {
            KvSource::Tensors(l) => (
                k_len,
                strides(l, kv_heads, k_len, head_dim),
                strides(l, kv_heads, k_len, v_dim),
                o.kv_lengths,
            ),
            KvSource::Cache { len, lengths } => {
                if o.kv_lengths.is_some() {
                    return Err(Error::Argument {
                        op,
                        name: "kv_lengths",
                        value: "Some(..)".into(),
                        expected: "None when attending over a KvCache: the cache tracks its own valid lengths",
                    });
                }
                (
                    len,
                    strides(AttentionLayout::HeadsFirst, kv_heads, k_len, head_dim),
                    strides(AttentionLayout::HeadsFirst, kv_heads, k_len, v_dim),
                    lengths,
                )
            }
        };
        let full = [batch, q_heads, q_len, kv_len];
        let mut mask_strides = [0; 3];
        if let Some(m) = o.mask {
            q.device().same(op, m.device())?;
            if m.dtype() != DType::F32 && m.dtype() != q.dtype() {
                return Err(Error::UnsupportedDType {
                    op,
                    dtype: m.dtype(),
                    supported: "an f32 mask or one in the activations' dtype",
                });
            }
            let ok = (2..=4).contains(&m.rank())
                && m.shape()[m.rank() - 1] == kv_len
                && m.shape()
                    .iter()
                    .rev()
                    .zip(full.iter().rev())
                    .all(|(&a, &b)| a == b || a == 1);
            if !ok {
                return Err(Error::shape(
                    op,
                    format!(
                        "mask of shape {:?} does not broadcast to [batch, q_heads, q_len, kv_len] = {full:?}; give rank 2 to 4, last dimension {kv_len}, every other dimension equal or 1",
                        m.shape()
                    ),
                ));
            }
            let s = broadcast_strides(m.shape(), &full);
            mask_strides = [s[0], s[1], s[2]];
        }
        if let Some(l) = lengths {
            q.device().same(op, l.device())?;
            if l.dtype() != DType::U32 {
                return Err(Error::UnsupportedDType {
                    op,
                    dtype: l.dtype(),
                    supported: "u32 kv_lengths (Tensor::from_slice::<u32>)",
                });
            }
            if l.shape() != [batch] {
                return Err(Error::shape(
                    op,
                    format!(
                        "kv_lengths has shape {:?}; it must be [batch] = [{batch}]",
                        l.shape()
                    ),
                ));
            }
            if let Backend::Cpu = &q.device().inner.backend {
                let v = l.cpu_storage().as_slice::<u32>();
                if let Some((b, &len)) = v.iter().enumerate().find(|(_, &n)| n as usize > kv_len) {
                    return Err(Error::KvLength {
                        batch: b,
                        length: len as u64,
                        kv_len,
                    });
                }
            }
        }
        let out_shape = match layout {
            AttentionLayout::HeadsFirst => vec![batch, q_heads, q_len, v_dim],
            AttentionLayout::SeqFirst => vec![batch, q_len, q_heads, v_dim],
        };
        Ok(Plan {
            batch,
            kv_heads,
            group: q_heads / kv_heads,
            q_len,
            kv_len,
            head_dim,
            v_dim,
            scale,
            softcap,
            causal: o.causal,
            window: o.window.unwrap_or(0),
            mask: o.mask.cloned(),
            mask_strides,
            kv_lengths: lengths.cloned(),
            q_strides: strides(layout, q_heads, q_len, head_dim),
            k_strides,
            v_strides,
            o_strides: strides(layout, q_heads, q_len, v_dim),
            out_shape,
        })
    }

    /// Query rows per key/value head: the `group` query heads sharing it × `q_len`. Row
    /// `r` is query head `kv_head·group + r / q_len`, token `r % q_len`.
    pub(crate) fn rows(&self) -> usize {
        self.group * self.q_len
    }

    /// Position of query token `i` aligned to the end of `len` valid keys.
    pub(crate) fn position(&self, len: usize, i: usize) -> i64 {
        i as i64 + len as i64 - self.q_len as i64
    }

    /// The keys `[lo, hi)` any of the query tokens `i_min..=i_max` may see, given `len`
    /// valid keys: whole key tiles outside it are skipped.
    pub(crate) fn key_range(&self, len: usize, i_min: usize, i_max: usize) -> (usize, usize) {
        let (p_min, p_max) = (self.position(len, i_min), self.position(len, i_max));
        let mut hi = len as i64;
        let mut lo = 0i64;
        if self.causal {
            hi = hi.min(p_max + 1);
        }
        if self.window > 0 {
            let w = self.window as i64;
            lo = lo.max(p_min - w + 1);
            if !self.causal {
                hi = hi.min(p_max + w);
            }
        }
        let hi = hi.max(0) as usize;
        let lo = (lo.max(0) as usize).min(hi);
        (lo, hi)
    }
}

fn run(q: &Tensor, k: &Tensor, v: &Tensor, plan: &Plan) -> Result<Tensor> {
    // A valid length past the keys is found on the GPU: the output's fault word, beside
    // those its inputs carry (a KV cache's appends).
    dispatch::run1_reporting_faults(
        "attention",
        &[q, k, v]
            .into_iter()
            .chain(plan.mask.as_ref())
            .chain(plan.kv_lengths.as_ref())
            .collect::<Vec<_>>(),
        &plan.out_shape,
        q.dtype(),
        |g, out, slot| crate::gpu::attention::attention(g, q, k, v, plan, out, slot),
        || Ok(crate::cpu::attention::attention(q, k, v, plan)),
    )
}

/// Attention over explicit cache tensors (used by [`crate::ops::kv_cache::KvCache`]).
pub(crate) fn attention_over(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions<'_>,
    kv: KvSource<'_>,
) -> Result<Tensor> {
    let plan = Plan::new(q, k, v, options, kv)?;
    run(q, k, v, &plan)
}

/// [`describe`] for attention over cache tensors.
pub(crate) fn describe_over(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions<'_>,
    kv: KvSource<'_>,
) -> Result<String> {
    let plan = Plan::new(q, k, v, options, kv)?;
    Ok(match &q.device().inner.backend {
        Backend::Gpu(g) => {
            crate::gpu::attention::AttentionLaunch::select(g, q.device().info(), &plan)?.to_string()
        }
        Backend::Cpu => crate::cpu::attention::describe(&plan),
    })
}
