//! Driver limits the launchers work around, each with where it comes from.
//!
//! **llvmpipe stops looping after 65,535 iterations.** Mesa's software rasteriser (the
//! driver behind lavapipe, the Vulkan adapter of CI machines without a GPU) counts the
//! iterations of every loop of a shader invocation against one budget,
//! `LP_MAX_TGSI_LOOP_ITERATIONS` = 65,535 ("Maximum iterations before loop termination,
//! shared between every loop", gallium/auxiliary/gallivm/lp_bld_limits.h), and once it
//! is spent every loop exits — silently: the kernel finishes with rows half read and
//! outputs unwritten. Seen here: softmax and the norms stopped short at about 2^24
//! elements per row, `sum` at 2^25, a 64×131072×64 matmul was wrong by 20×, attention
//! over 16,384 keys by 5e-3. The row kernels take 8 words per loop iteration (see
//! shaders/softmax.wgsl); matmul and attention split their reduction dimension across
//! workgroups on this driver, with the chunk sizes below (4× below where errors began).

use super::GpuContext;

/// The most K one workgroup of the tiled matmul walks on a loop-limited driver (errors
/// began between K = 16,384 and 131,072).
pub(crate) const LOOP_LIMITED_K_CHUNK: usize = 4096;

/// The most K the subgroup matmul walks on a loop-limited driver: its loops take
/// K + K / 8 iterations at subgroup size 8 (18,432 at this K, 3.5× inside the budget);
/// longer K runs as the tiled kernel split into chunks.
pub(crate) const LOOP_LIMITED_SUBGROUP_K: usize = 16384;

/// The most keys one attention workgroup walks on a loop-limited driver (errors began
/// between 4,096 and 16,384 keys at head dimension 128).
pub(crate) const LOOP_LIMITED_KEYS: usize = 1024;

/// The longest key chunk allowed where 1,024-key chunks would need more partial results
/// than one binding holds (4,096 keys at head dimension 128 were still exact).
pub(crate) const LOOP_LIMITED_MAX_KEYS: usize = 4096;

impl GpuContext {
    /// True on llvmpipe, whose shader invocations stop every loop after 65,535
    /// iterations in all.
    pub(crate) fn loop_limited(&self) -> bool {
        self.lavapipe
    }
}
