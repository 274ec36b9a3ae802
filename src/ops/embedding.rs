//! Embedding gather: token ids to rows of a table.

use super::dispatch;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `out[.., :] = table[ids[..], :]`: for ids of shape `S` (u32) and a `[vocab, d]`
/// table (any float dtype), a tensor of shape `S + [d]` in the table's dtype.
///
/// Out-of-range ids (≥ vocab) are [`Error::IndexOutOfRange`] naming the first one. The
/// CPU device returns it from this call. A GPU device cannot look at ids without a
/// readback (they may have been made on the GPU, by argmax): the kernel records the bad
/// id in the output's own fault word, and every read of the output (`to_vec`) returns
/// the error; reads of other tensors, on any thread, are unaffected. The kernel never
/// reads outside the table. (Ops that inherit fault words so far: embedding, attention
/// and the KV cache; other ops computed from a faulty output do not yet carry it on.)
///
pub fn embedding(ids: &Tensor, table: &Tensor) -> Result<Tensor> {
    let op = "embedding";
    dispatch::same_device(op, ids, [table])?;
    if ids.dtype() != DType::U32 {
        return Err(Error::UnsupportedDType {
            op,
            dtype: ids.dtype(),
            supported: "u32 ids (Tensor::from_slice::<u32>, or argmax's output)",
        });
    }
    table.expect_float(op)?;
    if table.rank() != 2 {
        return Err(Error::shape(
            op,
            format!("table has shape {:?}; it must be [vocab, d]", table.shape()),
        ));
    }
    let (vocab, d) = (table.shape()[0], table.shape()[1]);
    if d == 0 && !ids.is_empty() {
        // the output would be empty, so no kernel would ever look at the ids
        return Err(Error::shape(
            op,
            format!(
                "table has shape {:?}: rows of zero width; an embedding table needs d >= 1",
                table.shape()
            ),
        ));
    }
    let mut shape = ids.shape().to_vec();
    shape.push(d);
    crate::shape::check_rank(op, &shape)?;
    // On a GPU the ids may only exist there (argmax's output), so a bad id is recorded in
    // the output's own fault word and reported by every read of the output.
    dispatch::run1_reporting_faults(
        op,
        ids.device(),
        &shape,
        table.dtype(),
        [ids, table],
        |g, out, slot| crate::gpu::embedding::embedding(g, ids, table, vocab, d, out, slot),
        || {
            let ids_v = ids.cpu_storage().as_slice::<u32>();
            if let Some((position, &index)) =
                ids_v.iter().enumerate().find(|(_, &i)| i as usize >= vocab)
            {
                return Err(Error::IndexOutOfRange {
                    op,
                    index: index as u64,
                    position,
                    bound: vocab,
                });
            }
            Ok(crate::cpu::embedding::embedding(
                ids_v,
                table.cpu_storage(),
                d,
            ))
        },
    )
}
