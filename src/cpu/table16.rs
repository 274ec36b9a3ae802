//! Result tables for 16-bit single-input maps: every f16 or bf16 input has only 65,536
//! bit patterns, so an op without parameters is one lookup per element.
//!
//! Each table holds the op's output for every input bit pattern, 65,536 `u16` = 128 KiB
//! (it stays in L2 while a tensor streams through). A table is built lazily, once per
//! (op, dtype), on the first call of that op on a 16-bit tensor, by running the op's
//! computed path (widen → f32 formula → narrow, the 8-lane form where the CPU has it) on
//! all 65,536 inputs; so the lookup returns bit for bit what the computed path returns,
//! NaN and ±∞ included. At most [`SLOTS`] × 2 tables exist (2 MiB in all); they live until
//! the process ends. The transcendental maps use them (exp, log, rsqrt, tanh, sigmoid,
//! GELU, GELU-tanh, SiLU): computed in f16 they were compute-bound at 12–57 % of the copy
//! probe; cheap maps (neg, abs, sqrt, ReLU) and ops with parameters (clamp) stay computed,
//! and so do the exp-based f16 maps where the CPU has 16-lane forms
//! ([`computed_is_faster`]).

use super::unary::BLOCK;
use super::Pooled;
use crate::dtype::{DType, Element};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Which op a table belongs to (its index among the tabled ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Exp,
    Log,
    Rsqrt,
    Tanh,
    Sigmoid,
    Gelu,
    GeluTanh,
    Silu,
}

/// Number of tabled ops.
pub(crate) const SLOTS: usize = 8;

/// The 65,536 results and one padding entry: the 8-lane lookup reads 32 bits at each
/// index, so the last index reads one entry past the table.
type Table = Box<[u16; TABLE_LEN]>;

const TABLE_LEN: usize = (1 << 16) + 1;

static F16_TABLES: [OnceLock<Table>; SLOTS] = [const { OnceLock::new() }; SLOTS];
static BF16_TABLES: [OnceLock<Table>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// The table of `slot` for `T` (f16 or bf16; `None` for other dtypes), built on first use
/// by `computed` run on every bit pattern of `T`.
pub(crate) fn table<T: Element + Pooled>(
    slot: Slot,
    computed: impl FnOnce(&[T]) -> Vec<T>,
) -> Option<&'static [u16; TABLE_LEN]> {
    if computed_is_faster(slot, T::DTYPE) {
        return None;
    }
    let tables = match T::DTYPE {
        DType::F16 => &F16_TABLES,
        DType::BF16 => &BF16_TABLES,
        _ => return None,
    };
    let t = tables[slot as usize].get_or_init(|| {
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let inputs: &[T] = bytemuck::cast_slice(&bits);
        let out = computed(inputs);
        let mut out: Vec<u16> = bytemuck::cast_slice(&out).to_vec();
        out.push(0);
        out.into_boxed_slice()
            .try_into()
            .expect("a 16-bit map returns one result per input")
    });
    Some(t)
}

/// Whether `slot`'s op on `dtype` runs faster computed than looked up: the exp-based
/// maps and rsqrt in f16 where the CPU has the 16-lane AVX-512 forms (f16 exp 3.6-5.4
/// -> 2.9-3.1 ms, SiLU 5.3-5.8 -> 3.3-3.6 ms at 4096x4096; GELU, tanh and log stay
/// faster as lookups, and bf16 has no in-register conversion to go with them).
fn computed_is_faster(slot: Slot, dtype: DType) -> bool {
    dtype == DType::F16
        && matches!(
            slot,
            Slot::Exp | Slot::Sigmoid | Slot::Silu | Slot::GeluTanh | Slot::Rsqrt
        )
        && super::lanes::available_avx512()
        && super::lanes::available_f16()
}

/// `out[i] = table[x[i]]` for 16-bit `x`, in parallel blocks.
pub(crate) fn lookup<T: Element + Pooled>(x: &[T], table: &[u16; TABLE_LEN]) -> Vec<T> {
    let mut out = super::take::<T>(x.len());
    let src: &[u16] = bytemuck::cast_slice(x);
    let dst: &mut [u16] = bytemuck::cast_slice_mut(&mut out);
    let gather = super::lanes::available();
    dst.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .for_each(|(o, s)| {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if gather {
                // SAFETY: AVX2 was detected (`lanes::available`); o and s have one length.
                done = unsafe { gather16(s, o, table) };
            }
            let _ = gather;
            for (o, &s) in o[done..].iter_mut().zip(&s[done..]) {
                *o = table[s as usize];
            }
        });
    out
}

/// `o[i] = table[s[i]]` sixteen at a time with two 8-lane gathers (a dword at each index,
/// keeping its low half: the padding entry covers the last index); returns how many
/// elements it wrote. On Zen 3/4 one gather of 8 beats 8 scalar loads, stores and
/// zero-extensions, and the loop moves 32 bytes per load and store instead of 2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather16(s: &[u16], o: &mut [u16], table: &[u16; TABLE_LEN]) -> usize {
    use std::arch::x86_64::*;
    let n = s.len().min(o.len()) / 16 * 16;
    let base = table.as_ptr() as *const i32;
    let low = _mm256_set1_epi32(0xffff);
    let mut i = 0;
    while i < n {
        let v = _mm256_loadu_si256(s.as_ptr().add(i) as *const __m256i);
        let even = _mm256_i32gather_epi32::<2>(base, _mm256_and_si256(v, low));
        let odd = _mm256_i32gather_epi32::<2>(base, _mm256_srli_epi32::<16>(v));
        let r = _mm256_or_si256(_mm256_and_si256(even, low), _mm256_slli_epi32::<16>(odd));
        _mm256_storeu_si256(o.as_mut_ptr().add(i) as *mut __m256i, r);
        i += 16;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::activation::Activation;
    use crate::ops::unary::UnaryOp;
    use half::{bf16, f16};

    /// The table path returns, for every 16-bit input (NaN, ±∞, subnormals included),
    /// the bits the computed path returns.
    fn same_bits<T: Element + Pooled>() {
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        let all: &[T] = bytemuck::cast_slice(&bits);
        let unary = [
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Rsqrt,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
        ];
        for op in unary {
            let want = crate::cpu::unary::computed(op, all);
            let got = crate::cpu::unary::run(op, all);
            assert_eq!(
                bytemuck::cast_slice::<T, u16>(&want),
                bytemuck::cast_slice::<T, u16>(&got),
                "{op:?} {:?}",
                T::DTYPE
            );
        }
        for act in [Activation::Gelu, Activation::GeluTanh, Activation::Silu] {
            let want = crate::cpu::activation::computed(act, all, None);
            let got = crate::cpu::activation::run(act, all, None);
            assert_eq!(
                bytemuck::cast_slice::<T, u16>(&want),
                bytemuck::cast_slice::<T, u16>(&got),
                "{act:?} {:?}",
                T::DTYPE
            );
        }
    }

    #[test]
    fn f16_tables_match_computed_path() {
        same_bits::<f16>();
    }

    #[test]
    fn bf16_tables_match_computed_path() {
        same_bits::<bf16>();
    }
}
