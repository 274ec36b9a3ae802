// Fused attention, flash style: softmax(q·kᵀ·scale + mask)·v without the score matrix.
//
// A workgroup of 64 invocations owns a tile of 64/TPR query rows of one (batch, kv head):
// the rows of a kv head are its `group` query heads × q_len tokens, so grouped-query heads
// share every K/V tile. TPR invocations serve one row, each owning PER consecutive
// elements of head_dim (so head_dim 256 needs only 32 registers per invocation). The
// workgroup streams BK keys at a time through workgroup memory; each invocation computes
// its partial dot products, the TPR partials of a row are summed through workgroup
// memory, and the row's running max, sum and output are updated with the online-softmax
// rescale (shaders/common/online_softmax.wgsl). Key tiles wholly hidden from every row of
// the tile (above the causal diagonal, outside the window, past the valid length) are
// never loaded.
//
// Split-KV (flash-decoding): with splits > 1 the workgroup only walks keys
// [split·chunk, (split+1)·chunk) and writes its unnormalised (max, sum, output) triple to
// `part`; shaders/attention_merge.wgsl combines the splits. A few queries against a long
// cache thereby use many workgroups instead of one per head.

// #header
@group(0) @binding(0) var<storage, read> q: array<f32>;
fn load_q(i: u32) -> f32 { return q[i]; }
fn load2_q(w: u32) -> vec2<f32> { return vec2<f32>(q[2u * w], q[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> k: array<f32>;
fn load_k(i: u32) -> f32 { return k[i]; }
fn load2_k(w: u32) -> vec2<f32> { return vec2<f32>(k[2u * w], k[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read> v: array<f32>;
fn load_v(i: u32) -> f32 { return v[i]; }
fn load2_v(w: u32) -> vec2<f32> { return vec2<f32>(v[2u * w], v[2u * w + 1u]); }
@group(0) @binding(3) var<storage, read> mask: array<u32>;
fn load_mask(i: u32) -> u32 { return mask[i]; }
@group(0) @binding(4) var<storage, read> lens: array<u32>;
fn load_lens(i: u32) -> u32 { return lens[i]; }
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
fn store_o(i: u32, v: f32) { o[i] = v; }
fn store2_o(w: u32, v: vec2<f32>) { o[2u * w] = v.x; o[2u * w + 1u] = v.y; }
@group(0) @binding(6) var<storage, read_write> part: array<u32>;
fn store_part(i: u32, v: u32) { part[i] = v; }
// #end header

// #piece attention_common
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
// #end piece attention_common

// invocations per query row (a power of two; 64 / TPR rows per workgroup)
override TPR: u32 = 4u;
// head_dim elements per invocation, at most 32
override PER: u32 = 32u;
// keys per tile: BK · (head_dim + v_dim) <= 2048 and BK <= 32
override BK: u32 = 16u;

// #piece online_softmax
// Online softmax over a stream of scores: a running max m, a running sum l of
// exp(s - m) and an output accumulated unnormalised. When a larger max m' arrives,
// everything accumulated so far is rescaled by exp(m - m'), so one pass over the keys
// gives the exact softmax. Hidden scores are OS_EMPTY (or -inf) and weigh 0; a row that
// saw no visible score keeps m = OS_EMPTY and l = 0 and finishes as 0 (never NaN).
const OS_EMPTY: f32 = -3.0e38;

// exp(m_old - m_new): the factor for what was accumulated under m_old (0 when nothing was).
fn os_rescale(m_old: f32, m_new: f32) -> f32 {
    if (m_old <= OS_EMPTY) {
        return 0.0;
    }
    return exp(m_old - m_new);
}

// exp(s - m): the weight of score s under the running max m (0 for a hidden score).
fn os_weight(s: f32, m: f32) -> f32 {
    if (s <= OS_EMPTY) {
        return 0.0;
    }
    return exp(s - m);
}

// acc / l, or 0 for a row that saw no visible key.
fn os_finish(acc: f32, l: f32) -> f32 {
    if (l > 0.0) {
        return acc / l;
    }
    return 0.0;
}
// #end piece online_softmax

// K tile [BK][head_dim] then V tile [BK][v_dim]
var<workgroup> kv_tile: array<f32, 2048>;
// partial dot products [64 invocations][BK]
var<workgroup> partial: array<f32, 2048>;
var<workgroup> wg_range: vec2<u32>;
var<workgroup> wg_len: u32;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // grid: [batch][kv_heads][row_tiles][splits], folded into x and y
    let flat = wid.y * groups.x + wid.x;
    let split = flat % params.splits;
    var rest = flat / params.splits;
    let tile = rest % params.row_tiles;
    rest = rest / params.row_tiles;
    let kvh = rest % params.kv_heads;
    let b = rest / params.kv_heads;
    if (b >= params.batch) {
        return;
    }
    let hd = params.head_dim;
    let vd = params.v_dim;
    let bq = 64u / TPR;
    let rows = params.group * params.q_len;
    let r0 = tile * bq;
    let r1 = min(r0 + bq, rows) - 1u;
    let r = r0 + lid / TPR;
    let lane = lid % TPR;
    let row_ok = r < rows;
    let rr = min(r, rows - 1u);
    let qh = kvh * params.group + rr / params.q_len;
    let i = rr % params.q_len;

    if (lid == 0u) {
        let len = valid_length(b);
        wg_range = key_range(r0, r1, len, split);
        wg_len = len;
    }
    let range = workgroupUniformLoad(&wg_range);
    let len = workgroupUniformLoad(&wg_len);
    let p = i32(i) + i32(len) - i32(params.q_len);

    let d0 = lane * PER;
    let qbase = b * params.q_sb + qh * params.q_sh + i * params.q_sr;
    var qv: array<f32, 32>;
    var acc: array<f32, 32>;
    for (var t = 0u; t < PER; t++) {
        let d = d0 + t;
        var x = 0.0;
        if (row_ok && d < hd) {
            x = load_q(qbase + d) * params.scale;
        }
        qv[t] = x;
        acc[t] = 0.0;
    }
    var m = OS_EMPTY;
    var l = 0.0;
    let kbase = b * params.k_sb + kvh * params.k_sh;
    let vbase = b * params.v_sb + kvh * params.v_sh;
    let mbase = b * params.m_sb + qh * params.m_sh + i * params.m_sr;
    let vt0 = BK * hd;
    let row0 = (lid / TPR) * TPR;
    var sc: array<f32, 32>;
    let causal = params.causal != 0u;
    let window = i32(params.window);
    for (var kt = range.x; kt < range.y; kt += BK) {
        let nk = min(BK, range.y - kt);
        workgroupBarrier();
        for (var e = lid; e < nk * hd; e += 64u) {
            let jj = e / hd;
            kv_tile[e] = load_k(kbase + (kt + jj) * params.k_sr + (e - jj * hd));
        }
        for (var e = lid; e < nk * vd; e += 64u) {
            let jj = e / vd;
            kv_tile[vt0 + e] = load_v(vbase + (kt + jj) * params.v_sr + (e - jj * vd));
        }
        workgroupBarrier();
        for (var jj = 0u; jj < nk; jj++) {
            var s = 0.0;
            for (var t = 0u; t < PER; t++) {
                let d = d0 + t;
                if (d < hd) {
                    s += qv[t] * kv_tile[jj * hd + d];
                }
            }
            partial[lid * BK + jj] = s;
        }
        workgroupBarrier();
        var tmax = OS_EMPTY;
        for (var jj = 0u; jj < nk; jj++) {
            var s = 0.0;
            for (var u = 0u; u < TPR; u++) {
                s += partial[(row0 + u) * BK + jj];
            }
            if (params.softcap > 0.0) {
                s = params.softcap * tanh_safe(s / params.softcap);
            }
            let j = kt + jj;
            let vis = row_ok && key_visible(j, range.y, p, causal, window);
            if (vis && params.has_mask != 0u) {
                s += bitcast<f32>(load_mask(mbase + j));
            }
            if (!vis) {
                s = OS_EMPTY;
            }
            sc[jj] = s;
            tmax = max(tmax, s);
        }
        // online softmax: rescale what this row accumulated to the new max
        let m_new = max(m, tmax);
        if (m_new > OS_EMPTY) {
            let alpha = os_rescale(m, m_new);
            l = l * alpha;
            for (var t = 0u; t < PER; t++) {
                acc[t] = acc[t] * alpha;
            }
            for (var jj = 0u; jj < nk; jj++) {
                let wgt = os_weight(sc[jj], m_new);
                l += wgt;
                for (var t = 0u; t < PER; t++) {
                    let d = d0 + t;
                    if (d < vd) {
                        acc[t] += wgt * kv_tile[vt0 + jj * vd + d];
                    }
                }
            }
            m = m_new;
        }
    }
    if (!row_ok) {
        return;
    }
    if (params.splits == 1u) {
        let obase = b * params.o_sb + qh * params.o_sh + i * params.o_sr;
        for (var t = 0u; t < PER; t++) {
            let d = d0 + t;
            if (d < vd) {
                store_o(obase + d, os_finish(acc[t], l));
            }
        }
    } else {
        // partial triple: part[batch][kv_heads][rows][splits][2 + v_dim]
        let pbase = (((b * params.kv_heads + kvh) * rows + r) * params.splits + split) * (vd + 2u);
        if (lane == 0u) {
            store_part(pbase, bitcast<u32>(m));
            store_part(pbase + 1u, bitcast<u32>(l));
        }
        for (var t = 0u; t < PER; t++) {
            let d = d0 + t;
            if (d < vd) {
                store_part(pbase + 2u + d, bitcast<u32>(acc[t]));
            }
        }
    }
}
