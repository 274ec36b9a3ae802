//! A key/value cache for autoregressive decoding: one preallocated
//! `[batch, kv_heads, max_len, dim]` pair per layer, rows appended in place, and
//! attention that reads only the valid prefix.
//!
//! ```
//! use openkern::ops::attention::{AttentionLayout, AttentionOptions};
//! use openkern::ops::kv_cache::{CachePosition, KvCache};
//! use openkern::{DType, Device, Tensor};
//! # fn main() -> openkern::Result<()> {
//! let device = Device::cpu();
//! let mut cache = KvCache::new(&device, 1, 2, 16, 8, 8, DType::F32)?;
//! let causal = AttentionOptions { causal: true, ..Default::default() };
//! // prefill 3 tokens, then decode one
//! let k = Tensor::from_slice(&device, &[0.1f32; 48], &[1, 2, 3, 8])?;
//! cache.append(&k, &k, CachePosition::Host(0), AttentionLayout::HeadsFirst)?;
//! let q = Tensor::from_slice(&device, &[0.2f32; 48], &[1, 2, 3, 8])?;
//! let _prefill = cache.attention(&q, &causal)?;
//! let k1 = Tensor::from_slice(&device, &[0.3f32; 16], &[1, 2, 1, 8])?;
//! cache.append(&k1, &k1, CachePosition::Host(3), AttentionLayout::HeadsFirst)?;
//! let q1 = Tensor::from_slice(&device, &[0.2f32; 16], &[1, 2, 1, 8])?;
//! let out = cache.attention(&q1, &causal)?; // sees keys 0..=3
//! assert_eq!(out.shape(), &[1, 2, 1, 8]);
//! # Ok(())
//! # }
//! ```
//!
//! **Positions.** [`KvCache::append`] writes the new rows of every batch entry at a
//! position given either on the host ([`CachePosition::Host`], one position for the
//! whole batch) or as a u32 tensor on the device ([`CachePosition::Device`], shape
//! `[batch]` or `[1]`), e.g. computed by an earlier op: no host round trip. After an
//! append, batch entry `b`'s valid length is `position_b + new_tokens` (rows past it are
//! ignored, so rewinding a sequence is an append at an earlier position). A device
//! position whose rows would run past `max_len` is found by the kernel, which writes
//! nothing for that entry and records the fault; the next read or [`Device::sync`]
//! returns [`Error::CacheOverflow`]. On the CPU device, and for host positions, the
//! append itself returns it.
//!
//! **Attention** ([`KvCache::attention`]) takes q for the new tokens only (`q_len` of
//! them, the last `q_len` positions of each entry's valid prefix), so causal masking
//! aligns to each entry's own length. With host positions the kernels read exactly the
//! valid prefix; with device positions they read the per-entry lengths on the device and
//! skip every key tile past them.
//!
//! **Engines.** Keep one `KvCache` per layer. For one sequence, use `batch = 1`. To batch
//! several sequences, give each a batch slot of one cache per layer and append with a
//! device position tensor holding each slot's own position (sequences of different
//! lengths then decode together, each seeing only its own prefix); a finished sequence's
//! slot is reused by appending the new sequence's prompt at position 0. Sequences that
//! come and go at different rates can also keep separate batch-1 caches and run one
//! attention call each.
//!
//! [`Device::sync`]: crate::Device::sync

use super::attention::{
    attention_over, describe_over, AttentionLayout, AttentionOptions, KvSource,
};
use crate::cpu::CpuStorage;
use crate::device::{Backend, Device};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{CpuSlice, Storage, Tensor};
use std::sync::Arc;

/// Where [`KvCache::append`] writes its rows.
#[derive(Debug, Clone, Copy)]
pub enum CachePosition<'a> {
    /// The same row for every batch entry, known on the host.
    Host(usize),
    /// A u32 tensor of shape `[batch]` (one row per entry) or `[1]` (shared), on the
    /// cache's device.
    Device(&'a Tensor),
}

/// A preallocated key/value cache of one attention layer. See the module docs.
#[derive(Debug)]
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    /// u32 `[batch]` valid lengths, written by device-positioned appends.
    lengths: Tensor,
    /// The valid length when every append so far had a host position.
    len: Option<usize>,
    batch: usize,
    kv_heads: usize,
    max_len: usize,
    head_dim: usize,
    v_dim: usize,
    /// On a GPU, the fault word every append reports an overflow into; the cache tensors
    /// (and attention read from them) carry it, so a read after an overflowing append is
    /// the typed error.
    fault: Option<std::sync::Arc<crate::gpu::FaultSlot>>,
}

impl KvCache {
    /// An empty cache of `max_len` rows per batch entry and head, in `dtype`.
    pub fn new(
        device: &Device,
        batch: usize,
        kv_heads: usize,
        max_len: usize,
        head_dim: usize,
        v_dim: usize,
        dtype: DType,
    ) -> Result<KvCache> {
        if !dtype.is_float() {
            return Err(Error::UnsupportedDType {
                op: "kv_cache",
                dtype,
                supported: "f32, f16 and bf16",
            });
        }
        if batch == 0 || kv_heads == 0 || max_len == 0 || head_dim == 0 || v_dim == 0 {
            return Err(Error::shape(
                "kv_cache",
                format!("every size must be positive (batch {batch}, kv_heads {kv_heads}, max_len {max_len}, head_dim {head_dim}, v_dim {v_dim})"),
            ));
        }
        let mut k = Tensor::zeros(device, &[batch, kv_heads, max_len, head_dim], dtype)?;
        let mut v = Tensor::zeros(device, &[batch, kv_heads, max_len, v_dim], dtype)?;
        let mut lengths = Tensor::zeros(device, &[batch], DType::U32)?;
        let fault = device.gpu_ctx().map(|g| g.fault_slot()).transpose()?;
        for t in [&mut k, &mut v, &mut lengths] {
            t.faults.extend(fault.clone());
        }
        Ok(KvCache {
            k,
            v,
            lengths,
            fault,
            len: Some(0),
            batch,
            kv_heads,
            max_len,
            head_dim,
            v_dim,
        })
    }

    /// The key cache, `[batch, kv_heads, max_len, head_dim]`. Read it through this
    /// reference after the appends you need: a clone (or view) taken earlier is a
    /// snapshot on the CPU device, where an append copies storage that is shared, while
    /// on a GPU later appends write into the same buffer and the clone sees them.
    pub fn keys(&self) -> &Tensor {
        &self.k
    }

    /// The value cache, `[batch, kv_heads, max_len, v_dim]`.
    pub fn values(&self) -> &Tensor {
        &self.v
    }

    /// The valid length when all appends had host positions; `None` after a device
    /// positioned append (the lengths then live on the device).
    pub fn len(&self) -> Option<usize> {
        self.len
    }

    /// True when nothing was appended yet (host positions only).
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Rows per batch entry and head.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Writes `k_new` / `v_new` (`[batch, kv_heads, n, dim]`, or `[batch, n, kv_heads,
    /// dim]` with [`AttentionLayout::SeqFirst`]) at rows `position..position + n`.
    pub fn append(
        &mut self,
        k_new: &Tensor,
        v_new: &Tensor,
        position: CachePosition<'_>,
        layout: AttentionLayout,
    ) -> Result<()> {
        let op = "kv_cache append";
        let device = self.k.device().clone();
        for (t, dim, name) in [
            (k_new, self.head_dim, "k_new"),
            (v_new, self.v_dim, "v_new"),
        ] {
            device.same(op, t.device())?;
            if t.dtype() != self.k.dtype() {
                return Err(Error::DTypeMismatch {
                    op,
                    lhs: self.k.dtype(),
                    rhs: t.dtype(),
                });
            }
            let s = t.shape();
            let (b, h, d) = if s.len() == 4 {
                match layout {
                    AttentionLayout::HeadsFirst => (s[0], s[1], s[3]),
                    AttentionLayout::SeqFirst => (s[0], s[2], s[3]),
                }
            } else {
                (0, 0, 0)
            };
            if (b, h, d) != (self.batch, self.kv_heads, dim) {
                return Err(Error::shape(
                    op,
                    format!(
                        "{name} has shape {s:?} ({layout:?}); the cache takes [batch {}, kv_heads {}, n, {dim}] rows",
                        self.batch, self.kv_heads
                    ),
                ));
            }
        }
        let n = match layout {
            AttentionLayout::HeadsFirst => k_new.shape()[2],
            AttentionLayout::SeqFirst => k_new.shape()[1],
        };
        let vn = match layout {
            AttentionLayout::HeadsFirst => v_new.shape()[2],
            AttentionLayout::SeqFirst => v_new.shape()[1],
        };
        if vn != n {
            return Err(Error::shape(
                op,
                format!("k_new has {n} new rows but v_new has {vn}"),
            ));
        }
        let pos_tensor;
        let positions = match position {
            CachePosition::Host(p) => {
                if p + n > self.max_len {
                    return Err(Error::CacheOverflow {
                        batch: 0,
                        end: (p + n) as u64,
                        capacity: self.max_len,
                    });
                }
                pos_tensor = Tensor::from_slice(&device, &[p as u32], &[1])?;
                &pos_tensor
            }
            CachePosition::Device(t) => {
                device.same(op, t.device())?;
                if t.dtype() != DType::U32 {
                    return Err(Error::UnsupportedDType {
                        op,
                        dtype: t.dtype(),
                        supported: "a u32 position tensor (Tensor::from_slice::<u32>)",
                    });
                }
                if t.shape() != [self.batch] && t.shape() != [1] {
                    return Err(Error::shape(
                        op,
                        format!(
                            "the position tensor has shape {:?}; give [batch] = [{}] or [1]",
                            t.shape(),
                            self.batch
                        ),
                    ));
                }
                t
            }
        };
        let (k_str, v_str) = match layout {
            AttentionLayout::HeadsFirst => (
                [
                    self.kv_heads * n * self.head_dim,
                    n * self.head_dim,
                    self.head_dim,
                ],
                [self.kv_heads * n * self.v_dim, n * self.v_dim, self.v_dim],
            ),
            AttentionLayout::SeqFirst => (
                [
                    n * self.kv_heads * self.head_dim,
                    self.head_dim,
                    self.kv_heads * self.head_dim,
                ],
                [
                    n * self.kv_heads * self.v_dim,
                    self.v_dim,
                    self.kv_heads * self.v_dim,
                ],
            ),
        };
        let append = Append {
            batch: self.batch,
            kv_heads: self.kv_heads,
            n,
            max_len: self.max_len,
            head_dim: self.head_dim,
            v_dim: self.v_dim,
            k_strides: k_str,
            v_strides: v_str,
        };
        match &device.inner.backend {
            Backend::Gpu(g) => {
                if n > 0 {
                    crate::gpu::kv_cache::append(
                        g,
                        &append,
                        k_new,
                        v_new,
                        positions,
                        &self.k,
                        &self.v,
                        &self.lengths,
                        self.fault.as_ref().ok_or_else(|| Error::Internal {
                            message: "a GPU KV cache without its fault word".into(),
                        })?,
                    )?;
                }
            }
            Backend::Cpu => {
                let pos = positions.cpu_storage().as_slice::<u32>().to_vec();
                let pos_of = |b: usize| pos[if pos.len() == 1 { 0 } else { b }] as usize;
                for b in 0..self.batch {
                    let end = pos_of(b) as u64 + n as u64;
                    if end > self.max_len as u64 {
                        return Err(Error::CacheOverflow {
                            batch: b,
                            end,
                            capacity: self.max_len,
                        });
                    }
                }
                let ends: Vec<u32> = (0..self.batch).map(|b| (pos_of(b) + n) as u32).collect();
                write_rows(&mut self.k, k_new, &append, &pos_of, self.head_dim, &k_str);
                write_rows(&mut self.v, v_new, &append, &pos_of, self.v_dim, &v_str);
                self.lengths = Tensor::from_slice(&device, &ends, &[self.batch])?;
            }
        }
        self.len = match position {
            CachePosition::Host(p) => Some(p + n),
            CachePosition::Device(_) => None,
        };
        Ok(())
    }

    fn source(&self) -> KvSource<'_> {
        match self.len {
            Some(len) => KvSource::Cache { len, lengths: None },
            None => KvSource::Cache {
                len: self.max_len,
                lengths: Some(&self.lengths),
            },
        }
    }

    /// Attention of `q` (the new tokens: `[batch, q_heads, q_len, head_dim]`, or
    /// seq-first per `options.layout`) over the cache's valid prefix. `options.kv_lengths`
    /// must be `None` (the cache knows its lengths); an additive mask's last dimension
    /// is the valid length with host positions, `max_len` after device positions.
    pub fn attention(&self, q: &Tensor, options: &AttentionOptions<'_>) -> Result<Tensor> {
        attention_over(q, &self.k, &self.v, options, self.source())
    }

    /// The kernel [`attention`](Self::attention) would run, as text.
    pub fn describe(&self, q: &Tensor, options: &AttentionOptions<'_>) -> Result<String> {
        describe_over(q, &self.k, &self.v, options, self.source())
    }
}

/// The checked sizes of one append, shared by both backends.
pub(crate) struct Append {
    pub batch: usize,
    pub kv_heads: usize,
    pub n: usize,
    pub max_len: usize,
    pub head_dim: usize,
    pub v_dim: usize,
    /// (batch, head, row) strides of k_new and v_new.
    pub k_strides: [usize; 3],
    pub v_strides: [usize; 3],
}

/// CPU: copies the new rows into `cache` in place (copy-on-write if the storage is
/// shared with a clone the caller kept).
fn write_rows(
    cache: &mut Tensor,
    new: &Tensor,
    a: &Append,
    pos_of: &dyn Fn(usize) -> usize,
    dim: usize,
    strides: &[usize; 3],
) {
    // the cache made its own storage (KvCache::new), so it is never a view: rows land
    // at their index in the storage; views taken of it read it like clones do
    debug_assert_eq!(cache.offset, 0, "a KV cache owns its storage");
    if Arc::get_mut(&mut cache.storage).is_none() {
        let copy = match cache.cpu_storage() {
            CpuSlice::F32(v) => CpuStorage::F32(v.to_vec()),
            CpuSlice::F16(v) => CpuStorage::F16(v.to_vec()),
            CpuSlice::BF16(v) => CpuStorage::BF16(v.to_vec()),
            CpuSlice::U32(v) => CpuStorage::U32(v.to_vec()),
        };
        cache.storage = Arc::new(Storage::Cpu(copy));
    }
    let Some(Storage::Cpu(dst)) = Arc::get_mut(&mut cache.storage) else {
        unreachable!("made unique just above")
    };
    fn copy<T: Copy>(
        dst: &mut [T],
        src: &[T],
        a: &Append,
        pos_of: &dyn Fn(usize) -> usize,
        dim: usize,
        s: &[usize; 3],
    ) {
        for b in 0..a.batch {
            for h in 0..a.kv_heads {
                for t in 0..a.n {
                    let from = b * s[0] + h * s[1] + t * s[2];
                    let to = ((b * a.kv_heads + h) * a.max_len + pos_of(b) + t) * dim;
                    dst[to..to + dim].copy_from_slice(&src[from..from + dim]);
                }
            }
        }
    }
    match (dst, new.cpu_storage()) {
        (CpuStorage::F32(d), CpuSlice::F32(s)) => copy(d, s, a, pos_of, dim, strides),
        (CpuStorage::F16(d), CpuSlice::F16(s)) => copy(d, s, a, pos_of, dim, strides),
        (CpuStorage::BF16(d), CpuSlice::BF16(s)) => copy(d, s, a, pos_of, dim, strides),
        _ => unreachable!("append checks dtypes first"),
    }
}
