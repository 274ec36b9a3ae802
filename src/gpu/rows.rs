//! What the row kernels (softmax, norm, reduce) share: the workgroup size for a row
//! length, and the choice between the shared-memory and subgroup reductions.

use super::shader::KernelSource;
use super::GpuContext;
use std::sync::LazyLock;

/// A row kernel in its two forms: the file as written (shared-memory reductions) and the
/// same file with the subgroup reductions swapped in.
pub(crate) struct RowKernel {
    pub(crate) shared: &'static KernelSource,
    pub(crate) subgroup: &'static LazyLock<KernelSource>,
}

impl RowKernel {
    /// The subgroup form where the device has SUBGROUP, else the shared-memory form.
    pub(crate) fn pick(&self, g: &GpuContext) -> &'static KernelSource {
        if g.features.contains(wgpu::Features::SUBGROUP) {
            self.subgroup
        } else {
            self.shared
        }
    }
}

/// The subgroup twin of a row kernel: same bindings and variants, reductions swapped.
pub(crate) fn subgroup_twin(k: &'static KernelSource, name: &'static str) -> KernelSource {
    KernelSource {
        name,
        source: super::shader::with_subgroup_reductions(k.source),
        entry_points: k.entry_points,
        tensors: k.tensors,
        mixed_dtypes: k.mixed_dtypes,
        enables: k.enables,
        specialisations: k.specialisations,
    }
}

/// Lanes per row: enough to give each lane a few words of the row, at least 64 (two
/// 32-wide subgroups) and at most 256 (the reductions' shared arrays).
pub(crate) fn row_workgroup(n: usize) -> u32 {
    let words = n.div_ceil(2).max(1);
    if words <= 256 {
        64
    } else if words <= 1024 {
        128
    } else {
        256
    }
}
