//! The stream: one pending command encoder per device.
//!
//! Ops record compute passes here and return at once. The encoder is submitted when a
//! read needs data, on `sync()`, or once it holds [`BATCH_LIMIT`] passes, so a
//! transformer layer is one submission rather than one per op.

use super::timing::PassTimer;

/// Passes recorded before the stream submits on its own.
pub(crate) const BATCH_LIMIT: u32 = 512;

#[derive(Default)]
pub(crate) struct Stream {
    pub(crate) encoder: Option<wgpu::CommandEncoder>,
    pub(crate) batch_passes: u32,
    pub(crate) submissions: u64,
    pub(crate) passes: u64,
    /// While set, every recorded pass writes begin/end timestamps.
    pub(crate) timer: Option<PassTimer>,
}

impl Stream {
    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("openkern stream"),
            })
        })
    }

    /// Hands the recorded work to the queue. Returns whether anything was submitted.
    pub(crate) fn submit(&mut self, queue: &wgpu::Queue) -> bool {
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
