//! Widened f32 copies of 16-bit matmul weights, reused across calls.
//!
//! The CPU GEMM runs in f32, so an f16/bf16 weight used to be widened into a fresh f32
//! copy on every call (for a 384×1536 weight, as long as the product itself at small
//! M). The copy is now made once per weight and kept here.
//!
//! **Key**: the weight tensor's storage (the `Arc` every clone and reshape of it shares),
//! held as a `Weak`, with the element range the tensor covers in it (two views of one
//! stacked weight, e.g. the gate and up halves of a gate-up projection, are two
//! entries), so the cache never keeps a tensor alive and a new tensor at a
//! reused address never matches a dead entry (`Weak::ptr_eq` plus a live upgrade).
//! Tensors are immutable, so a live entry is never stale.
//!
//! **Freed**: entries whose tensor has dropped are swept on every lookup; the cache
//! holds at most [`MAX_BYTES`] of f32 copies, evicting the least recently used; and
//! `Device::trim_pool` empties it. Only rank-2 operands (linear / projection weights)
//! are cached, not batched activations such as attention's K and V.

use crate::tensor::Storage;
use std::sync::{Arc, Mutex, Weak};

/// Most bytes of widened copies kept.
pub(crate) const MAX_BYTES: usize = 1 << 30;

struct Entry {
    key: Weak<Storage>,
    /// The weight's elements in the storage (a view covers part of it).
    range: std::ops::Range<usize>,
    data: Arc<Vec<f32>>,
    last_use: u64,
}

static CACHE: Mutex<(Vec<Entry>, u64)> = Mutex::new((Vec::new(), 0));

/// The f32 copy of elements `range` of `storage`, made with `widen` on a miss.
pub(crate) fn widened(
    storage: &Arc<Storage>,
    range: std::ops::Range<usize>,
    widen: impl FnOnce() -> Vec<f32>,
) -> Arc<Vec<f32>> {
    let key = Arc::downgrade(storage);
    {
        let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, clock) = &mut *guard;
        *clock += 1;
        entries.retain(|e| e.key.strong_count() > 0);
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.key.ptr_eq(&key) && e.range == range)
        {
            e.last_use = *clock;
            return e.data.clone();
        }
    }
    // widen outside the lock (it runs on all threads)
    let data = Arc::new(widen());
    let bytes = data.len() * 4;
    if bytes > MAX_BYTES {
        return data;
    }
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let (entries, clock) = &mut *guard;
    while entries.iter().map(|e| e.data.len() * 4).sum::<usize>() + bytes > MAX_BYTES {
        let oldest = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_use)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => drop(entries.swap_remove(i)),
            None => break,
        }
    }
    entries.push(Entry {
        key,
        range,
        data: data.clone(),
        last_use: *clock,
    });
    data
}

/// Drops every cached copy.
pub(crate) fn clear() {
    CACHE.lock().unwrap_or_else(|p| p.into_inner()).0.clear();
}
