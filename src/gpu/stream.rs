//! The stream: one pending command encoder per device.
//!
//! Ops record compute passes here and return at once. The encoder is submitted when a
//! read needs data, on `sync()`, or once it holds [`BATCH_LIMIT`] passes, so a
//! transformer layer is one submission rather than one per op.

use super::timing::PassTimer;

/// Passes recorded before the stream submits on its own: enough for one decoded token
/// of a model of up to about 128 layers (a LLaMA decode step records 11–16 passes a
/// layer: 26 for the 2-layer test model), so deep models still make one submission per
/// token, while a loop that never reads still submits.
pub(crate) const BATCH_LIMIT: u32 = 2048;

#[derive(Default)]
pub(crate) struct Stream {
    pub(crate) encoder: Option<wgpu::CommandEncoder>,
    pub(crate) batch_passes: u32,
    pub(crate) submissions: u64,
    pub(crate) passes: u64,
    /// While set, every recorded pass writes begin/end timestamps.
    pub(crate) timer: Option<PassTimer>,
    /// Uniform parameters of this batch's passes, packed into one mapped buffer.
    params: Option<ParamsArena>,
}

/// Bytes of one params arena: room for a batch's worth of small uniform structs.
const ARENA_BYTES: u64 = 128 << 10;

/// One buffer, mapped at creation, that this batch's dispatches write their uniform params
/// into at aligned offsets, instead of creating a buffer per dispatch. It is unmapped just
/// before the batch is submitted (a mapped buffer cannot be used by a submission) and then
/// dropped; wgpu keeps it alive until the GPU is done with it.
struct ParamsArena {
    buffer: wgpu::Buffer,
    used: u64,
}

impl Stream {
    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("openkern stream"),
            })
        })
    }

    /// Copies `bytes` into this batch's params arena; returns the buffer and offset to
    /// bind, or wgpu's message where the arena cannot be written.
    pub(crate) fn params(
        &mut self,
        device: &wgpu::Device,
        bytes: &[u8],
        align: u64,
    ) -> Result<(wgpu::Buffer, u64), String> {
        let size = (bytes.len() as u64).next_multiple_of(16).max(16);
        let fits = self
            .params
            .as_ref()
            .is_some_and(|a| a.used.next_multiple_of(align) + size <= ARENA_BYTES);
        if !fits {
            if let Some(full) = self.params.take() {
                full.buffer.unmap();
            }
            self.params = Some(ParamsArena {
                buffer: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("openkern params"),
                    size: ARENA_BYTES.max(size),
                    // STORAGE too: on lavapipe params bind as a read-only storage buffer
                    // (see gpu::pipeline_cache)
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: true,
                }),
                used: 0,
            });
        }
        let arena = self.params.as_mut().expect("arena ensured above");
        let offset = arena.used.next_multiple_of(align);
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        // fails only where the device is lost (the arena is invalid then)
        arena
            .buffer
            .get_mapped_range_mut(offset..offset + size)
            .map_err(|e| e.to_string())?
            .copy_from_slice(&padded);
        arena.used = offset + size;
        Ok((arena.buffer.clone(), offset))
    }

    /// Drops the recorded work unsubmitted (the device is lost; nothing can run it).
    pub(crate) fn discard(&mut self) {
        self.params = None;
        self.encoder = None;
        self.batch_passes = 0;
    }

    /// Hands the recorded work to the queue. Returns whether anything was submitted.
    pub(crate) fn submit(&mut self, queue: &wgpu::Queue) -> bool {
        if let Some(arena) = self.params.take() {
            arena.buffer.unmap();
        }
        match self.encoder.take() {
            Some(encoder) => {
                queue.submit([encoder.finish()]);
                self.submissions += 1;
                self.batch_passes = 0;
                true
            }
            None => false,
        }
    }
}
