//! Compiled pipelines, built once per (kernel, entry point, dtypes, constants).

use super::shader::{KernelSource, ShaderHeader};
use std::collections::HashMap;
use std::sync::Arc;

/// Everything that changes the compiled code of a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    pub kernel: &'static str,
    pub entry: &'static str,
    pub header: ShaderHeader,
    /// Override constants as (name, f64 bits), sorted by name.
    pub constants: Vec<(&'static str, u64)>,
}

impl KernelKey {
    pub(crate) fn new(
        kernel: &KernelSource,
        entry: &'static str,
        header: ShaderHeader,
        constants: &[(&'static str, f64)],
    ) -> Self {
        let mut constants: Vec<_> = constants.iter().map(|&(n, v)| (n, v.to_bits())).collect();
        constants.sort_unstable();
        KernelKey {
            kernel: kernel.name,
            entry,
            header,
            constants,
        }
    }
}

/// A built pipeline with its bind group layout, fetched once: wgpu registers a new layout
/// handle on every `get_bind_group_layout` call, which is work on each dispatch otherwise.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    pub(crate) pipelines: HashMap<KernelKey, Arc<Pipeline>>,
    pub(crate) built: u64,
}
