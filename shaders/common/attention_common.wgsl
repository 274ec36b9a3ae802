// What both attention kernels share: the uniform, the fault word, the key range a tile
// of rows walks and the per-key masks. The mask is f32 bits (the launcher casts 16-bit
// masks); `part` holds f32 bits.
struct Params {
    batch: u32,
    kv_heads: u32,
    // query heads per kv head
    group: u32,
    q_len: u32,
    kv_len: u32,
    head_dim: u32,
    v_dim: u32,
    // workgroups along the rows of one kv head
    row_tiles: u32,
    // element strides (batch, head, row) of q, k, v, o and the mask
    q_sb: u32,
    q_sh: u32,
    q_sr: u32,
    k_sb: u32,
    k_sh: u32,
    k_sr: u32,
    v_sb: u32,
    v_sh: u32,
    v_sr: u32,
    o_sb: u32,
    o_sh: u32,
    o_sr: u32,
    m_sb: u32,
    m_sh: u32,
    m_sr: u32,
    has_mask: u32,
    scale: f32,
    // 0 for none
    softcap: f32,
    causal: u32,
    // 0 for none
    window: u32,
    has_lens: u32,
    splits: u32,
    // keys per split
    chunk: u32,
    _pad0: u32,
}
@group(0) @binding(7) var<uniform> params: Params;
// [kind, value, position, bound]; kind 3 = a valid length past kv_len (clamped).
@group(0) @binding(8) var<storage, read_write> fault: array<atomic<u32>, 4>;

// tanh that stays finite for large |x| (exp overflow gives 1, not inf/inf)
fn tanh_safe(x: f32) -> f32 {
    let e = exp(2.0 * abs(x));
    return sign(x) * (1.0 - 2.0 / (e + 1.0));
}

fn report_length(given: u32, b: u32) {
    loop {
        let r = atomicCompareExchangeWeak(&fault[0], 0u, 3u);
        if (r.exchanged) {
            atomicStore(&fault[1], given);
            atomicStore(&fault[2], b);
            atomicStore(&fault[3], params.kv_len);
            return;
        }
        if (r.old_value != 0u) {
            return;
        }
    }
}

// The valid key count of batch entry b: kv_len, or its entry of `lens` (a length past
// kv_len is reported and clamped).
fn valid_length(b: u32) -> u32 {
    if (params.has_lens != 0u) {
        let given = load_lens(b);
        if (given > params.kv_len) {
            report_length(given, b);
        } else {
            return given;
        }
    }
    return params.kv_len;
}

// Keys [x, y) that rows r0..=r1 of one kv head (rows are group × q_len, token-minor) may
// see within split `split` of `len` valid keys: everything above the causal diagonal of
// the last row, or outside the window of every row, is left out.
fn key_range(r0: u32, r1: u32, len: u32, split: u32) -> vec2<u32> {
    // the tokens of the rows (rows that wrap into the next head span them all)
    var i_min = r0 % params.q_len;
    var i_max = r1 % params.q_len;
    if (r0 / params.q_len != r1 / params.q_len) {
        i_min = 0u;
        i_max = params.q_len - 1u;
    }
    let off = i32(len) - i32(params.q_len);
    let p_min = i32(i_min) + off;
    let p_max = i32(i_max) + off;
    var hi = i32(len);
    var lo = 0;
    if (params.causal != 0u) {
        hi = min(hi, p_max + 1);
    }
    if (params.window > 0u) {
        let w = i32(params.window);
        lo = max(lo, p_min - w + 1);
        if (params.causal == 0u) {
            hi = min(hi, p_max + w);
        }
    }
    // this split's share
    let c0 = i32(split * params.chunk);
    lo = max(lo, c0);
    hi = min(hi, c0 + i32(params.chunk));
    hi = max(hi, 0);
    lo = clamp(lo, 0, hi);
    return vec2<u32>(u32(lo), u32(hi));
}

// Whether the query at position p (its token index + len - q_len) sees key j, for j
// below the end `hi` of the walked range (which lies within the valid length), under
// the causal flag and window (0: none) the caller read from params once, outside its
// key loop (on llvmpipe each params read in a loop is another gather).
fn key_visible(j: u32, hi: u32, p: i32, causal: bool, window: i32) -> bool {
    let ji = i32(j);
    if (j >= hi || (causal && ji > p)) {
        return false;
    }
    if (window > 0) {
        if (ji <= p - window || (!causal && ji >= p + window)) {
            return false;
        }
    }
    return true;
}
