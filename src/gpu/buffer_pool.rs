//! Size-bucketed reuse of storage buffers.
//!
//! Sizes round up to one of four steps per power of two (2^k, 1.25·2^k, 1.5·2^k,
//! 1.75·2^k), so a reused buffer wastes at most a quarter of its size. A tensor's buffer
//! comes back here when its last handle drops. Reuse is safe because every write into a
//! buffer (kernel, upload, clear) is recorded into the same pending encoder as the reads
//! it must follow; nothing bypasses the encoder with `queue.write_buffer`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Smallest buffer handed out (also the granularity for tiny tensors).
const MIN_BUCKET: u64 = 256;

/// Rounds a request up to its bucket, never past `cap` (the binding limit).
pub(crate) fn bucket_size(bytes: u64, cap: u64) -> u64 {
    let bytes = bytes.max(MIN_BUCKET);
    let pow = 63 - bytes.leading_zeros(); // floor(log2)
    let base = 1u64 << pow;
    let step = (base / 4).max(4);
    let rounded = bytes.div_ceil(step) * step;
    rounded.min(cap.max(bytes)).next_multiple_of(4)
}

pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pooled_bytes: u64,
    /// Past this many idle bytes, returned buffers are freed instead of kept.
    max_pooled_bytes: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl BufferPool {
    pub(crate) fn new(max_pooled_bytes: u64) -> Self {
        BufferPool {
            free: HashMap::new(),
            pooled_bytes: 0,
            max_pooled_bytes,
            hits: 0,
            misses: 0,
        }
    }

    pub(crate) fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&size).and_then(Vec::pop);
        match &buffer {
            Some(_) => {
                self.hits += 1;
                self.pooled_bytes -= size;
            }
            None => self.misses += 1,
        }
        buffer
    }

    fn give(&mut self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        if self.pooled_bytes + size <= self.max_pooled_bytes {
            self.pooled_bytes += size;
            self.free.entry(size).or_default().push(buffer);
        }
    }

    /// Bytes held idle, waiting for reuse.
    pub(crate) fn idle_bytes(&self) -> u64 {
        self.pooled_bytes
    }

    /// Frees every idle buffer.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.pooled_bytes = 0;
    }
}

/// A storage buffer on loan from the pool; returns itself on drop.
pub(crate) struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Arc<Mutex<BufferPool>>,
}

impl PooledBuffer {
    pub(crate) fn new(buffer: wgpu::Buffer, pool: Arc<Mutex<BufferPool>>) -> Self {
        PooledBuffer {
            buffer: Some(buffer),
            pool,
        }
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buffer), Ok(mut pool)) = (self.buffer.take(), self.pool.lock()) {
            pool.give(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_size;

    #[test]
    fn buckets_waste_at_most_a_quarter() {
        for bytes in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let b = bucket_size(bytes, u64::MAX);
            assert!(b >= bytes && b.is_multiple_of(4), "{bytes} -> {b}");
            assert!(
                b <= (bytes.max(256) as f64 * 1.25) as u64 + 4,
                "{bytes} -> {b}"
            );
        }
        assert_eq!(
            bucket_size(1000, 1000),
            1000,
            "never rounds past the binding cap"
        );
    }
}
