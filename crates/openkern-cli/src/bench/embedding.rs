//! Benchmarks of embedding gather: bytes per second (ids + rows read, rows written).

use super::memory::{or_skip, row, tensor};
use super::{BenchArgs, Row};
use openkern::{ops, DType, Device, Tensor};

pub fn rows(device: &Device, args: &BenchArgs) -> openkern::Result<Vec<Row>> {
    let q = args.quick;
    let (vocab, d, tokens) = if q {
        (4000, 1024, 256)
    } else {
        (32_000, 4096, 4096)
    };
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        let case = format!("embedding {tokens} of {vocab}x{d}");
        out.extend(or_skip(
            &case,
            (|| {
                let table = tensor(device, &[vocab, d], dtype, 1)?;
                let ids: Vec<u32> = (0..tokens).map(|i| ((i * 7919) % vocab) as u32).collect();
                let ids = Tensor::from_slice(device, &ids, &[tokens])?;
                let bytes = (tokens * 4) as f64 + 2.0 * (tokens * d * dtype.size_in_bytes()) as f64;
                Ok(vec![row(
                    device,
                    "embedding",
                    case.clone(),
                    dtype,
                    bytes,
                    q,
                    || ops::embedding(&ids, &table).map(drop),
                )?])
            })(),
        )?);
    }
    Ok(out)
}
