//! GPU timestamp timing of recorded passes, with a wall-clock fallback.
//!
//! While a timing window is open every compute pass writes a timestamp at its start and
//! end; the window's device time is the sum of (end − start) over its passes, i.e.
//! kernel time without the host's submission gaps.

/// Queries per resolve batch (two per pass).
pub(crate) const TIMER_QUERIES: u32 = 4096;

pub(crate) struct PassTimer {
    pub(crate) queries: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    pub(crate) readback: wgpu::Buffer,
    pub(crate) used: u32,
    /// Ticks accumulated from batches already resolved.
    pub(crate) ticks: u64,
    pub(crate) passes: u64,
}

impl PassTimer {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let bytes = TIMER_QUERIES as u64 * 8;
        PassTimer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("openkern pass timer"),
                ty: wgpu::QueryType::Timestamp,
                count: TIMER_QUERIES,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("openkern timer resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("openkern timer readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            used: 0,
            ticks: 0,
            passes: 0,
        }
    }

    /// The query pair for the next pass, or None when the batch is full.
    pub(crate) fn next_pair(&mut self) -> Option<(u32, u32)> {
        if self.used + 2 > TIMER_QUERIES {
            return None;
        }
        let pair = (self.used, self.used + 1);
        self.used += 2;
        self.passes += 1;
        Some(pair)
    }

    /// Records the resolve of the used queries into `encoder`.
    pub(crate) fn record_resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        if self.used == 0 {
            return;
        }
        encoder.resolve_query_set(&self.queries, 0..self.used, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, self.used as u64 * 8);
    }

    /// After the resolve was submitted and completed: adds the batch to `ticks`.
    pub(crate) fn collect(&mut self, device: &wgpu::Device) -> Result<(), String> {
        if self.used == 0 {
            return Ok(());
        }
        let bytes = self.used as u64 * 8;
        let slice = self.readback.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| e.to_string())?;
        {
            let view = self
                .readback
                .get_mapped_range(..bytes)
                .map_err(|e| e.to_string())?;
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            for pair in stamps.chunks_exact(2) {
                self.ticks += pair[1].saturating_sub(pair[0]);
            }
        }
        self.readback.unmap();
        self.used = 0;
        Ok(())
    }
}

/// How a time was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingSource {
    /// GPU timestamps around every pass: kernel time only.
    GpuTimestamps,
    /// Host wall clock around submission and completion.
    WallClock,
}

impl std::fmt::Display for TimingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimingSource::GpuTimestamps => "gpu-timestamps",
            TimingSource::WallClock => "wall-clock",
        })
    }
}

/// The result of timing a piece of recorded work.
#[derive(Debug, Clone, Copy)]
pub struct KernelTiming {
    /// Seconds per iteration.
    pub seconds: f64,
    /// Passes recorded per iteration (GPU) or 0.
    pub passes_per_iter: f64,
    /// How it was measured.
    pub source: TimingSource,
}
