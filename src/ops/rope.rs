//! Rotary position embedding (RoPE), in both layouts engines use, with a position
//! offset so decode can rotate just the new token.
//!
//! Each head vector of `x` (the last dimension, `d` elements) at position `p` has its
//! first `rotary_dim` elements rotated in pairs by the angle `p · inv_freq[i]` with
//! `inv_freq[i] = θ^(−2i/rotary_dim)` rounded to f32, as Hugging Face transformers rounds
//! it (pair `i`); the rest are copied. The angle itself is formed exactly (in f64: both
//! factors are f32 values, so their product has no rounding) and its cos and sin are
//! taken in f64 on the host, once per call (cached across the layers of a forward, which
//! rotate the same positions), so every position below the bound of 2^24 rotates by the
//! f32 rounding of the exact cos and sin on every backend. An f32 angle, as engines
//! often form it, is off by up to 0.5 rad at position 8,000,000. Positions (offset +
//! sequence length) must stay below 2^24; past it the call is an error.
//!
//! NaN and ±∞ inputs propagate through the rotation to the pair holding them.

use super::dispatch;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex};

/// Which elements form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RopeLayout {
    /// Pairs `(2i, 2i+1)`: GPT-J, llama.cpp's default ("normal") mode, Meta's Llama.
    Interleaved,
    /// Pairs `(i, i + rotary_dim/2)`: GPT-NeoX and Hugging Face Llama (`rotate_half`).
    Halves,
}

/// Where the sequence axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RopeAxes {
    /// `x` is `[.., seq, heads, d]` (the projection's output before any transpose).
    SeqHeadsDim,
    /// `x` is `[.., heads, seq, d]` (attention layout); a `[seq, d]` tensor is one head.
    HeadsSeqDim,
}

/// Options for [`rope`].
#[derive(Debug, Clone, Copy)]
pub struct RopeOptions {
    /// Frequency base θ (10 000 for Llama 2, 500 000 for Llama 3). Finite, > 0.
    pub theta: f32,
    /// Pair layout.
    pub layout: RopeLayout,
    /// Axis order of `x`.
    pub axes: RopeAxes,
    /// Position of the first sequence entry: the number of tokens already in the KV
    /// cache when decoding.
    pub offset: usize,
    /// Leading elements of each head vector that rotate (even, ≤ 512, ≤ d); `None` for
    /// all of them. Partial rotary (GPT-NeoX, Phi) rotates fewer.
    pub rotary_dim: Option<usize>,
}

impl Default for RopeOptions {
    fn default() -> Self {
        RopeOptions {
            theta: 10_000.0,
            layout: RopeLayout::Halves,
            axes: RopeAxes::SeqHeadsDim,
            offset: 0,
            rotary_dim: None,
        }
    }
}

/// Most rotated elements per head vector.
pub const MAX_ROTARY_DIM: usize = 512;

/// One past the largest position [`rope`] rotates: `offset + seq` may not exceed it.
pub const MAX_POSITION: usize = 1 << 24;

/// Tables kept for reuse: a forward pass rotates the same positions in every layer.
const CACHED_TABLES: usize = 8;

/// `(cos, sin)` of every rotated pair at every position of a call, `[seq][rot / 2]`: the
/// angle `(offset + s) · inv_freq[i]`, with `inv_freq[i] = θ^(−2i/rot)` rounded to f32,
/// formed exactly in f64 (an integer below 2^24 times an f32 value needs at most 48
/// bits) and its cos and sin taken in f64, then rounded to f32. Recent tables are cached,
/// keyed by what they are computed from (θ, rot and the position range).
pub(crate) fn angle_table(theta: f32, rot: usize, offset: usize, seq: usize) -> Arc<Vec<[f32; 2]>> {
    type Key = (u32, usize, usize, usize);
    type Table = Arc<Vec<[f32; 2]>>;
    static CACHE: Mutex<Vec<(Key, Table)>> = Mutex::new(Vec::new());
    let key: Key = (theta.to_bits(), rot, offset, seq);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
        let hit = cache.remove(i);
        let table = hit.1.clone();
        cache.push(hit);
        return table;
    }
    let inv_freq: Vec<f32> = (0..rot / 2)
        .map(|i| (theta as f64).powf(-2.0 * i as f64 / rot as f64) as f32)
        .collect();
    let table: Arc<Vec<[f32; 2]>> = Arc::new(
        (offset..offset + seq)
            .flat_map(|p| {
                inv_freq.iter().map(move |&f| {
                    let (s, c) = (p as f64 * f as f64).sin_cos();
                    [c as f32, s as f32]
                })
            })
            .collect(),
    );
    if cache.len() == CACHED_TABLES {
        cache.remove(0);
    }
    cache.push((key, table.clone()));
    table
}

/// The checked call, shared by both backends.
pub(crate) struct Plan {
    pub d: usize,
    pub rot: usize,
    pub halves: bool,
    /// position of row r = (r / div) % seq + offset
    pub div: usize,
    pub seq: usize,
    pub offset: usize,
    /// `(cos, sin)` per position of the call and pair, from [`angle_table`].
    pub table: Arc<Vec<[f32; 2]>>,
}

impl Plan {
    pub(crate) fn position(&self, row: usize) -> usize {
        (row / self.div) % self.seq + self.offset
    }
}

/// Rotates `x` by position. See the module docs.
pub fn rope(x: &Tensor, o: &RopeOptions) -> Result<Tensor> {
    let op = "rope";
    x.expect_float(op)?;
    let min_rank = match o.axes {
        RopeAxes::SeqHeadsDim => 3,
        RopeAxes::HeadsSeqDim => 2,
    };
    if x.rank() < min_rank {
        return Err(Error::shape(
            op,
            format!(
                "x has shape {:?}; {:?} needs rank >= {min_rank} (add unit dimensions with reshape)",
                x.shape(),
                o.axes
            ),
        ));
    }
    let r = x.rank();
    let d = x.shape()[r - 1];
    let rot = o.rotary_dim.unwrap_or(d);
    if !d.is_multiple_of(2) || !rot.is_multiple_of(2) || rot > d || rot > MAX_ROTARY_DIM || rot == 0
    {
        return Err(Error::shape(
            op,
            format!(
                "head dimension {d} with rotary_dim {rot}: both must be even, rotary_dim between 2 and min(d, {MAX_ROTARY_DIM})"
            ),
        ));
    }
    if !(o.theta.is_finite() && o.theta > 0.0) {
        return Err(Error::Argument {
            op,
            name: "theta",
            value: o.theta.to_string(),
            expected: "a finite positive frequency base (e.g. 10000)",
        });
    }
    let (seq, div) = match o.axes {
        RopeAxes::SeqHeadsDim => (x.shape()[r - 3], x.shape()[r - 2]),
        RopeAxes::HeadsSeqDim => (x.shape()[r - 2], 1),
    };
    if o.offset
        .checked_add(seq)
        .is_none_or(|end| end > MAX_POSITION)
    {
        return Err(Error::Argument {
            op,
            name: "offset",
            value: o.offset.to_string(),
            expected: "offset + sequence length at most 2^24 (positions 0 ..= 2^24 - 1)",
        });
    }
    let table = angle_table(o.theta, rot, o.offset, seq.max(1));
    let plan = Plan {
        d,
        rot,
        halves: o.layout == RopeLayout::Halves,
        div: div.max(1),
        seq: seq.max(1),
        offset: o.offset,
        table,
    };
    dispatch::run1(
        op,
        &[x],
        x.shape(),
        x.dtype(),
        |g, out| crate::gpu::rope::rope(g, x, &plan, out),
        || Ok(crate::cpu::rope::rope(x.cpu_storage(), &plan)),
    )
}
