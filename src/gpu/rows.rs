//! What the row kernels (softmax, norm, reduce) share: the workgroup size for a row
//! length, and the choice between the shared-memory and subgroup reductions.

use super::shader::KernelSource;
use super::GpuContext;

/// A row kernel in its two forms: the file as written (shared-memory reductions) and the
/// same file with the subgroup reductions swapped in.
pub(crate) struct RowKernel {
    pub(crate) shared: &'static KernelSource,
    pub(crate) subgroup: &'static KernelSource,
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
