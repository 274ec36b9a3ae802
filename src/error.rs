//! The one error type of the library. Every user mistake is a variant with the numbers a
//! caller needs to fix it; the library never panics on user input.

use crate::dtype::DType;

/// Result alias used throughout openkern.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in an openkern call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data given does not fill the shape asked for.
    #[error("data has {got} elements but shape {shape:?} needs {expected}; pass a slice of {expected} elements or change the shape")]
    DataLength {
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// Raw bytes whose length does not fill the shape and dtype asked for.
    #[error("{got} bytes given but a {dtype} tensor of shape {shape:?} needs {expected} ({elements} elements of {elem_bytes} bytes); check the dtype and shape against the file")]
    ByteLength {
        /// The shape asked for.
        shape: Vec<usize>,
        /// The dtype asked for.
        dtype: DType,
        /// Elements the shape needs.
        elements: usize,
        /// Bytes per element of the dtype.
        elem_bytes: usize,
        /// Bytes the shape and dtype need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A reshape to a shape with another element count.
    #[error("cannot reshape {from:?} ({from_len} elements) to {to:?} ({to_len} elements); the element count must stay the same")]
    ReshapeCount {
        /// Source shape.
        from: Vec<usize>,
        /// Elements of the source.
        from_len: usize,
        /// Target shape.
        to: Vec<usize>,
        /// Elements of the target.
        to_len: usize,
    },
    /// Two shapes that cannot be broadcast together.
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not broadcast: dimension {dim} (from the right) is {lhs_dim} vs {rhs_dim}; each pair must be equal or one of them 1")]
    Broadcast {
        /// The op that was called.
        op: &'static str,
        /// Left shape.
        lhs: Vec<usize>,
        /// Right shape.
        rhs: Vec<usize>,
        /// Offending dimension counted from the right (0 = last).
        dim: usize,
        /// Its size on the left.
        lhs_dim: usize,
        /// Its size on the right.
        rhs_dim: usize,
    },
    /// An operand has a shape the op cannot take.
    #[error("{op}: {message}")]
    Shape {
        /// The op that was called.
        op: &'static str,
        /// What is wrong and what to change.
        message: String,
    },
    /// Operands of different dtypes where the op needs them equal.
    #[error("{op}: operands have dtypes {lhs} and {rhs}; {}", dtype_mismatch_hint(*.lhs, *.rhs))]
    DTypeMismatch {
        /// The op that was called.
        op: &'static str,
        /// First dtype.
        lhs: DType,
        /// Second dtype.
        rhs: DType,
    },
    /// A parameter (norm weight or bias, linear bias, softmax mask) whose dtype is
    /// neither f32 nor the activation's dtype.
    #[error("{op}: {param} is {dtype} but x is {activation}; parameters must be f32 or x's dtype: {}", param_hint(.activation))]
    ParamDType {
        /// The op that was called.
        op: &'static str,
        /// Which parameter (`weight`, `bias`, `mask`).
        param: &'static str,
        /// Its dtype.
        dtype: DType,
        /// The activation's (x's) dtype.
        activation: DType,
    },
    /// A host type that does not match the tensor's dtype.
    #[error("tensor holds {tensor} but {requested} was requested; {}", host_type_hint(*.tensor, *.requested))]
    HostType {
        /// The tensor's dtype.
        tensor: DType,
        /// The Rust type's dtype.
        requested: DType,
        /// Variant name of the requested dtype, for the hint.
        requested_variant: &'static str,
    },
    /// Operands that live on different devices.
    #[error("{op}: operands live on different devices ({lhs} and {rhs}); move one with `.to_device(..)`")]
    DeviceMismatch {
        /// The op that was called.
        op: &'static str,
        /// First device name.
        lhs: String,
        /// Second device name.
        rhs: String,
    },
    /// A scalar argument that is out of range (NaN, negative epsilon, ...).
    #[error("{op}: argument `{name}` is {value}; {expected}")]
    Argument {
        /// The op that was called.
        op: &'static str,
        /// The argument's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A tensor larger than one storage binding of the device.
    #[error("{what} needs {bytes} bytes but this device binds at most {limit} bytes per storage buffer ({device}); split the tensor (e.g. along its first dimension) or use a device with a larger max_storage_buffer_binding_size")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Bytes needed.
        bytes: u64,
        /// The device's limit.
        limit: u64,
        /// The device.
        device: String,
    },
    /// The adapter lacks a feature the call needs.
    #[error("{op} needs the adapter feature {feature}, which {device} does not offer; {hint}")]
    MissingFeature {
        /// The op that was called.
        op: &'static str,
        /// The feature.
        feature: &'static str,
        /// The device.
        device: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// No adapter matched the request.
    #[error("no GPU adapter found: {reason}")]
    NoAdapter {
        /// Why, and what was seen.
        reason: String,
    },
    /// The adapter refused to open a device.
    #[error("could not open a device on adapter {adapter}: {source}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's error.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// A shader failed to compile on this adapter: an openkern bug or a driver bug.
    #[error("kernel {kernel} failed to build on {device}: {message}")]
    ShaderBuild {
        /// The kernel.
        kernel: String,
        /// The device.
        device: String,
        /// The compiler's message.
        message: String,
    },
    /// wgpu reported an error while running recorded work.
    #[error("GPU error on {device}: {message}")]
    Gpu {
        /// The device.
        device: String,
        /// wgpu's message.
        message: String,
    },
    /// A benchmark or file operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An op that does not take this dtype (e.g. a float op given u32 ids).
    #[error("{op} does not take {dtype} tensors; it takes {supported}")]
    UnsupportedDType {
        /// The op that was called.
        op: &'static str,
        /// The dtype given.
        dtype: DType,
        /// What it takes, and how to get there.
        supported: &'static str,
    },
    /// An index tensor holds a value past the end of the axis it indexes.
    #[error("{op}: index {index} at position {position} is out of range for an axis of {bound}; every index must be below {bound}")]
    IndexOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The offending value.
        index: u64,
        /// Its flat position in the index tensor.
        position: usize,
        /// The axis length.
        bound: usize,
    },
    /// The operands of a product disagree on K, the dimension summed over.
    #[error("{op}: inner dimensions differ: {lhs:?}{} has K = {k_lhs} but {rhs:?}{} has K = {k_rhs}; the first operand's columns must equal the second's rows (check trans_a / trans_b)", if *trans_a { " (transposed)" } else { "" }, if *trans_b { " (transposed)" } else { "" })]
    InnerDimMismatch {
        /// The op that was called.
        op: &'static str,
        /// The first operand's shape.
        lhs: Vec<usize>,
        /// Whether the first operand is read transposed.
        trans_a: bool,
        /// K as the first operand gives it.
        k_lhs: usize,
        /// The second operand's shape.
        rhs: Vec<usize>,
        /// Whether the second operand is read transposed.
        trans_b: bool,
        /// K as the second operand gives it.
        k_rhs: usize,
    },
    /// A per-column parameter (a bias, a norm weight) whose shape is not `[expected]`.
    #[error("{op}: {name} has shape {shape:?} but the rows it applies to have {expected} elements; pass a {name} of shape [{expected}]")]
    LastDimMismatch {
        /// The op that was called.
        op: &'static str,
        /// Which parameter.
        name: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// The row length it must match.
        expected: usize,
    },
    /// A shape whose element count (or size in bytes) does not fit the address space.
    #[error(
        "{op}: shape {shape:?} has more elements than memory can address; check the dimensions"
    )]
    ShapeOverflow {
        /// The op or constructor.
        op: &'static str,
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// A broken invariant inside openkern, not a mistake of the caller: please report it
    /// with the message.
    #[error("internal error in openkern (please report it): {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
    /// Attention query heads that are not a multiple of the key/value heads.
    #[error("attention: {q_heads} query heads are not a multiple of {kv_heads} key/value heads; grouped-query attention needs q_heads % kv_heads == 0 (repeat or regroup the heads)")]
    AttentionHeads {
        /// Query heads.
        q_heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// q and k with different head dimensions.
    #[error(
        "attention: q has head_dim {q} but k has {k}; the scores q·kᵀ need equal head dimensions"
    )]
    HeadDim {
        /// q's head dimension.
        q: usize,
        /// k's head dimension.
        k: usize,
    },
    /// A per-batch valid key length past the keys given.
    #[error("attention: kv_lengths[{batch}] is {length} but only {kv_len} keys are given; every valid length must be at most the key count")]
    KvLength {
        /// The batch entry.
        batch: usize,
        /// The length given.
        length: u64,
        /// Keys in k and v.
        kv_len: usize,
    },
    /// A KV-cache append that would end past the cache's capacity.
    #[error("kv_cache append: batch entry {batch} would end at row {end}, past the cache's capacity of {capacity} rows; allocate a larger cache (max_len) or start a new sequence")]
    CacheOverflow {
        /// The batch entry.
        batch: usize,
        /// Row one past the last written (position + new tokens).
        end: u64,
        /// Rows the cache holds.
        capacity: usize,
    },
    /// The GPU device is gone: destroyed (`wgpu::Device::destroy`), reset by the driver,
    /// or removed. Every later call on it fails with this error; its tensors are lost.
    #[error("the GPU device {device} is lost ({reason}); open a new Device (Device::new()) and upload the tensors again")]
    DeviceLost {
        /// The device.
        device: String,
        /// wgpu's reason.
        reason: String,
    },
    /// An allocation the host or the device cannot make (on a GPU, even after openkern
    /// freed its idle pooled buffers).
    #[error("{what} needs {bytes} bytes, which {device} could not allocate; use smaller shapes (a smaller batch, or process the tensor in slices along its first dimension) or free other tensors first")]
    OutOfMemory {
        /// What was being allocated.
        what: String,
        /// Bytes requested.
        bytes: u64,
        /// The device.
        device: String,
    },
    /// A range of one dimension (`narrow`, `slice`, `split`) that does not lie inside it.
    #[error("{op}: range {start}..{end} of dimension {dim} does not fit x of shape {shape:?} (dimension {dim} has {size} elements); pass start <= end <= {size}")]
    RangeOutOfBounds {
        /// The op.
        op: &'static str,
        /// The dimension the range indexes.
        dim: usize,
        /// First index of the range.
        start: usize,
        /// One past the last index (`start + len` for `narrow`, saturated on overflow).
        end: usize,
        /// The dimension's size.
        size: usize,
        /// x's shape.
        shape: Vec<usize>,
    },
}

/// What to call instead of `to_vec::<requested>()`: only calls that work on every device
/// (u32 does not cast to or from floats on a GPU, floats never cast to u32).
fn host_type_hint(tensor: DType, requested: DType) -> String {
    let read = format!(
        "read it with `.to_vec::<{}>()` or widened with `.to_f32_vec()`",
        tensor.rust_type()
    );
    if tensor.is_float() && requested.is_float() {
        format!(
            "{read}, or convert it first with `.cast(DType::{})`",
            requested.variant_name()
        )
    } else {
        read
    }
}

/// How to make two operands' dtypes agree, through casts that exist.
fn dtype_mismatch_hint(lhs: DType, rhs: DType) -> String {
    if lhs.is_float() && rhs.is_float() {
        format!(
            "cast the second with `.cast(DType::{})` first",
            lhs.variant_name()
        )
    } else {
        "this op takes float operands of one dtype; u32 ids go to `embedding` (or `.to_f32_vec()` on the host)".into()
    }
}

/// The cast that fixes a parameter for activations of `activation`.
fn param_hint(activation: &DType) -> String {
    match activation {
        DType::F32 => "cast it with `.cast(DType::F32)`".into(),
        a => format!(
            "cast it with `.cast(DType::F32)` or `.cast(DType::{})`",
            a.variant_name()
        ),
    }
}

impl Error {
    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}
