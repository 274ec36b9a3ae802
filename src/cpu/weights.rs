//! Cached forms of matmul weights, reused across calls: widened f32 copies of 16-bit
//! weights (for the `gemm` crate's path) and packed f32 column panels (for the CPU's own
//! GEMM, [`super::packed`]).
//!
//! The CPU GEMM runs in f32 on packed panels, so a weight used to be widened (16-bit)
//! and repacked on every call (for a 384×1536 weight, as long as the product itself at
//! small M). Each form is now made once per weight and kept here; a packed f32 weight
//! costs as much memory again as the weight while it is cached.
//!
//! **Key**: the weight tensor's storage (the `Arc` every clone and reshape of it shares),
//! held as a `Weak`, with the element range the tensor covers in it (two views of one
//! stacked weight, e.g. the gate and up halves of a gate-up projection, are two
//! entries) and the form: widened, or packed for a given (k, n) and element strides
//! (one weight read as `wᵀ` by `linear` and as `w` by `matmul` is two entries). The
//! cache never keeps a tensor alive, and a new tensor at a reused address never matches
//! a dead entry (`Weak::ptr_eq` plus a live upgrade; the `Weak` also keeps the old
//! allocation's address from being reused while the entry exists). Tensors are
//! immutable — the one in-place writer, a CPU KV cache's `append`, writes only storage
//! it holds uniquely, which a storage with a cache entry's `Weak` never is
//! (`Arc::get_mut` fails, so `append` copies first) — so a live entry is never stale.
//!
//! **Freed**: entries whose tensor has dropped are swept on every lookup (their memory
//! goes with them); the cache holds at most [`MAX_BYTES`] of copies, evicting the least
//! recently used (a form larger than that is made per call and not kept); and
//! `Device::trim_pool` empties it. Only rank-2 operands (linear / projection weights)
//! are cached, not batched activations such as attention's K and V.

use super::packed::PackedB;
use crate::tensor::Storage;
use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

/// Most bytes of cached forms kept.
pub(crate) const MAX_BYTES: usize = 1 << 30;

/// Which form of the weight an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// The elements widened to f32, in their order.
    Widened,
    /// [`PackedB`] of the (k, n) operand with element (kk, j) at `kk·sbk + j·sbn`.
    Packed {
        k: usize,
        n: usize,
        sbk: usize,
        sbn: usize,
    },
}

struct Entry {
    key: Weak<Storage>,
    /// The weight's elements in the storage (a view covers part of it).
    range: std::ops::Range<usize>,
    form: Form,
    data: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    last_use: u64,
}

static CACHE: Mutex<(Vec<Entry>, u64)> = Mutex::new((Vec::new(), 0));

/// The cached `form` of elements `range` of `storage`, made with `make` on a miss.
fn cached<T: Any + Send + Sync>(
    storage: &Arc<Storage>,
    range: std::ops::Range<usize>,
    form: Form,
    make: impl FnOnce() -> T,
    bytes_of: impl Fn(&T) -> usize,
) -> Arc<T> {
    let key = Arc::downgrade(storage);
    {
        let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, clock) = &mut *guard;
        *clock += 1;
        entries.retain(|e| e.key.strong_count() > 0);
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.key.ptr_eq(&key) && e.range == range && e.form == form)
        {
            e.last_use = *clock;
            if let Ok(data) = e.data.clone().downcast::<T>() {
                return data;
            }
        }
    }
    // made outside the lock (it runs on all threads)
    let data = Arc::new(make());
    let bytes = bytes_of(&data);
    if bytes > MAX_BYTES {
        return data;
    }
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let (entries, clock) = &mut *guard;
    while entries.iter().map(|e| e.bytes).sum::<usize>() + bytes > MAX_BYTES {
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
        form,
        data: data.clone(),
        bytes,
        last_use: *clock,
    });
    data
}

/// The f32 copy of elements `range` of `storage`, made with `widen` on a miss.
pub(crate) fn widened(
    storage: &Arc<Storage>,
    range: std::ops::Range<usize>,
    widen: impl FnOnce() -> Vec<f32>,
) -> Arc<Vec<f32>> {
    cached(storage, range, Form::Widened, widen, |v| v.len() * 4)
}

/// The packed panels of the (k, n) operand in elements `range` of `storage` (element
/// (kk, j) at `kk·sbk + j·sbn` of the range), made with `pack` on a miss.
pub(crate) fn packed(
    storage: &Arc<Storage>,
    range: std::ops::Range<usize>,
    (k, n, sbk, sbn): (usize, usize, usize, usize),
    pack: impl FnOnce() -> PackedB,
) -> Arc<PackedB> {
    let form = Form::Packed { k, n, sbk, sbn };
    cached(storage, range, form, pack, PackedB::bytes)
}

/// Drops every cached form.
pub(crate) fn clear() {
    CACHE.lock().unwrap_or_else(|p| p.into_inner()).0.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{self, MatmulOptions};
    use crate::{Device, Tensor};

    /// Entries keyed by `storage` (live or not: the `Weak` keeps its address unique).
    fn forms_of(storage: &Weak<Storage>) -> usize {
        let guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.iter().filter(|e| e.key.ptr_eq(storage)).count()
    }

    #[test]
    fn one_entry_per_range_and_layout_swept_when_the_weight_drops() {
        let device = Device::cpu();
        let (m, k) = (40, 32);
        let x = Tensor::from_f32(&device, &vec![0.5; m * k], &[m, k], crate::DType::F32).unwrap();
        let w = Tensor::from_f32(
            &device,
            &vec![0.25; 2 * k * k],
            &[2 * k, k],
            crate::DType::F32,
        )
        .unwrap();
        let storage = Arc::downgrade(&w.storage);
        ops::linear(&x, &w, None, None).unwrap();
        ops::linear(&x, &w, None, None).unwrap();
        assert_eq!(
            forms_of(&storage),
            1,
            "a second call reuses the packed form"
        );
        let halves = ops::split(&w, &[k, k], 0).unwrap();
        for h in &halves {
            ops::linear(&x, h, None, None).unwrap();
            ops::matmul_with(&x, h, &MatmulOptions::default()).unwrap();
        }
        assert_eq!(
            forms_of(&storage),
            5,
            "two ranges × two layouts, and the whole"
        );
        drop((w, halves));
        // the next lookup sweeps them
        let y = Tensor::from_f32(&device, &vec![0.5; k * k], &[k, k], crate::DType::F32).unwrap();
        ops::linear(&x, &y, None, None).unwrap();
        assert_eq!(
            forms_of(&storage),
            0,
            "a dropped weight's entries are swept on lookup"
        );
    }
}
