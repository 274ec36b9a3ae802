// Fused attention with subgroup operations, for adapters with SUBGROUP and one fixed
// subgroup size SG, which the launcher reads from the adapter. Same bindings, grid,
// masks and split-KV partials as shaders/attention.wgsl, but no workgroup memory and no
// barriers: each subgroup works on its own, which suits adapters where barriers are
// expensive (software rasterisers run a workgroup's invocations in turns and switch at
// every barrier) and frees workgroup memory elsewhere.
//
// A subgroup owns TM query rows of one (batch, kv head) and walks the keys in blocks of
// TN·SG. Scores: lane l holds keys kt + c·SG + l (c < TN) and accumulates their dot
// products with all TM rows; the q elements go round the subgroup with subgroupShuffle
// (each is loaded once per subgroup, like A in shaders/matmul_subgroup.wgsl). The
// block's row maxima are subgroupMax; each lane turns its own scores into weights
// exp(s - m). Output: lane l owns columns c·SG + l (c < VC) of the TM rows; for each key
// the TM weights are shuffled from the lane that holds them and the key's V row is read
// along v_dim. Row sums stay per lane (each lane adds the weights of its own keys,
// rescaled with its row) and are added across the subgroup once, at the end.
//
// Nothing assumes a subgroup size: every lane stride and loop bound is SG, head dims
// and key blocks shorter than SG leave lanes reading clamped (never stored) columns, and
// all branches around subgroup operations depend only on the rows and keys a whole
// subgroup shares. Registers: TM·TN scores and TM·VC accumulators (TM ≤ 8, TN ≤ 8,
// TM·VC ≤ 128), every array indexed only by loop counters of loops short enough to be
// unrolled (see the epilogue comment in shaders/matmul_subgroup.wgsl for what a loop
// left rolled costs on llvmpipe: the array moves to memory).

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
fn load8_v(o: u32) -> array<vec4<f32>, 2> { let i = 8u * o; return array<vec4<f32>, 2>(vec4<f32>(v[i], v[i + 1u], v[i + 2u], v[i + 3u]), vec4<f32>(v[i + 4u], v[i + 5u], v[i + 6u], v[i + 7u])); }
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

// subgroup size (fixed on this adapter)
override SG: u32 = 8u;
// query rows per subgroup (at most 8)
override TM: u32 = 8u;
// keys per lane in a block of TN·SG keys (at most 8)
override TN: u32 = 4u;
// output columns per lane: v_dim ≤ VC·SG, and TM·VC ≤ 128
override VC: u32 = 8u;
// subgroups per workgroup
override WGS: u32 = 1u;
override WG: u32 = SG * WGS;
// VC a multiple of 8, v_dim = VC·SG, V's strides and offset multiples of 8: a lane
// owns the VC adjacent output columns lane·VC.. instead of every SG-th one, and reads
// them from each V row with VC / 8 load8_v (one or two 16-byte loads each, see
// ShaderHeader::quads) instead of VC scalar loads; on llvmpipe every load is a loop
// over the lanes (lavapipe h8 s1024 d64 causal f32, fastest of 12, two runs: 145–151
// → 131 ms). Reading K the same way (eight elements of a lane's key per d0 step) was
// slower there: 164–248 ms with both.
override OCTETS_V: bool = false;

// The output column of accumulator t of this lane.
fn out_col(t: u32, lane: u32) -> u32 {
    if (OCTETS_V) {
        return lane * VC + t;
    }
    return t * SG + lane;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) sgi: u32) {
    // grid: [batch][kv_heads][row_tiles][splits], folded into x and y
    let flat = wid.y * groups.x + wid.x;
    let split = flat % params.splits;
    var rest = flat / params.splits;
    let tile = rest % params.row_tiles;
    rest = rest / params.row_tiles;
    let kvh = rest % params.kv_heads;
    let b = rest / params.kv_heads;
    let rows = params.group * params.q_len;
    let r0 = (tile * WGS + sgi) * TM;
    // whole subgroups leave together (nothing below waits for another subgroup)
    if (b >= params.batch || r0 >= rows) {
        return;
    }
    let hd = params.head_dim;
    let vd = params.v_dim;
    var len = params.kv_len;
    if (lane == 0u) {
        len = valid_length(b);
    }
    len = subgroupBroadcastFirst(len);
    let range = key_range(r0, min(r0 + TM, rows) - 1u, len, split);

    // per row: where its q and mask row start, its causal position, its running max
    // and (per lane) sum
    var q_at: array<u32, 8>;
    var m_at: array<u32, 8>;
    var pos: array<i32, 8>;
    var mx: array<f32, 8>;
    var sum: array<f32, 8>;
    for (var r = 0u; r < TM; r++) {
        let rr = min(r0 + r, rows - 1u);
        let qh = kvh * params.group + rr / params.q_len;
        let i = rr % params.q_len;
        q_at[r] = b * params.q_sb + qh * params.q_sh + i * params.q_sr;
        m_at[r] = b * params.m_sb + qh * params.m_sh + i * params.m_sr;
        pos[r] = i32(i) + i32(len) - i32(params.q_len);
        mx[r] = OS_EMPTY;
        sum[r] = 0.0;
    }
    var acc: array<f32, 128>;
    for (var t = 0u; t < TM * VC; t++) {
        acc[t] = 0.0;
    }
    let kbase = b * params.k_sb + kvh * params.k_sh;
    let vbase = b * params.v_sb + kvh * params.v_sh;

    // uniforms read once: on llvmpipe every params.x inside a loop is another 8-lane
    // gather from the uniform buffer
    let k_sr = params.k_sr;
    let v_sr = params.v_sr;
    let scale = params.scale;
    let softcap = params.softcap;
    let has_mask = params.has_mask != 0u;
    let causal = params.causal != 0u;
    let window = i32(params.window);
    for (var kt = range.x; kt < range.y; kt += TN * SG) {
        // scores s[r·4 + c] of row r with this lane's key kt + c·SG + lane (keys past
        // the range read the range's last row and are hidden below)
        var s: array<f32, 64>;
        var k_at: array<u32, 8>;
        for (var c = 0u; c < TN; c++) {
            k_at[c] = kbase + min(kt + c * SG + lane, range.y - 1u) * k_sr;
            for (var r = 0u; r < TM; r++) {
                s[r * 8u + c] = 0.0;
            }
        }
        for (var d0 = 0u; d0 < hd; d0 += SG) {
            // this lane's element d0 + lane of each row's q, passed round below
            var qd: array<f32, 8>;
            let dq = d0 + lane;
            for (var r = 0u; r < TM; r++) {
                var x = 0.0;
                if (dq < hd) {
                    x = load_q(q_at[r] + dq) * scale;
                }
                qd[r] = x;
            }
            for (var u = 0u; u < SG; u++) {
                if (d0 + u < hd) {
                    var kd: array<f32, 8>;
                    for (var c = 0u; c < TN; c++) {
                        kd[c] = load_k(k_at[c] + d0 + u);
                    }
                    for (var r = 0u; r < TM; r++) {
                        let x = subgroupShuffle(qd[r], u);
                        for (var c = 0u; c < TN; c++) {
                            s[r * 8u + c] = fma(x, kd[c], s[r * 8u + c]);
                        }
                    }
                }
            }
        }
        // Masks and the online-softmax update run on a copy of the scores, `sc`, which
        // then holds the weights: their loop over rows is too long to be unrolled
        // (tanh, mask loads, the row max), and indexed by its counter `s` and `acc`
        // would become arrays in memory for the products above and below as well. The
        // copy and the rescale are loops every compiler unrolls, so `s` and `acc` are
        // only ever indexed by constants.
        var sc: array<f32, 64>;
        for (var r = 0u; r < TM; r++) {
            for (var c = 0u; c < TN; c++) {
                sc[r * 8u + c] = s[r * 8u + c];
            }
        }
        var alpha: array<f32, 8>;
        for (var r = 0u; r < TM; r++) {
            let row_ok = r0 + r < rows;
            var bmax = OS_EMPTY;
            for (var c = 0u; c < TN; c++) {
                let j = kt + c * SG + lane;
                var x = sc[r * 8u + c];
                if (softcap > 0.0) {
                    x = softcap * tanh_safe(x / softcap);
                }
                let vis = row_ok && key_visible(j, range.y, pos[r], causal, window);
                if (vis && has_mask) {
                    x += bitcast<f32>(load_mask(m_at[r] + j));
                }
                if (!vis) {
                    x = OS_EMPTY;
                }
                sc[r * 8u + c] = x;
                bmax = max(bmax, x);
            }
            let m_new = max(mx[r], subgroupMax(bmax));
            alpha[r] = os_rescale(mx[r], m_new);
            mx[r] = m_new;
            var ls = sum[r] * alpha[r];
            for (var c = 0u; c < TN; c++) {
                let w = os_weight(sc[r * 8u + c], m_new);
                sc[r * 8u + c] = w;
                ls += w;
            }
            sum[r] = ls;
        }
        for (var r = 0u; r < TM; r++) {
            for (var t = 0u; t < VC; t++) {
                acc[r * VC + t] *= alpha[r];
            }
        }
        // acc += weights · V, one key at a time: key c·SG + u of the block lives in lane
        // u. The weights come from the copy, so the loop over c may stay rolled.
        let nk = min(TN * SG, range.y - kt);
        for (var c = 0u; c < TN; c++) {
            var wc: array<f32, 8>;
            for (var r = 0u; r < TM; r++) {
                wc[r] = sc[r * 8u + c];
            }
            for (var u = 0u; u < SG; u++) {
                let jj = c * SG + u;
                if (jj < nk) {
                    var w: array<f32, 8>;
                    for (var r = 0u; r < TM; r++) {
                        w[r] = subgroupShuffle(wc[r], u);
                    }
                    let v_at = vbase + (kt + jj) * v_sr;
                    if (OCTETS_V) {
                        for (var o = 0u; o < VC / 8u; o++) {
                            let xv = load8_v((v_at + lane * VC + 8u * o) >> 3u);
                            for (var i = 0u; i < 8u; i++) {
                                let x = xv[i / 4u][i % 4u];
                                for (var r = 0u; r < TM; r++) {
                                    acc[r * VC + 8u * o + i] = fma(w[r], x, acc[r * VC + 8u * o + i]);
                                }
                            }
                        }
                    } else {
                        for (var t = 0u; t < VC; t++) {
                            let x = load_v(v_at + min(t * SG + lane, vd - 1u));
                            for (var r = 0u; r < TM; r++) {
                                acc[r * VC + t] = fma(w[r], x, acc[r * VC + t]);
                            }
                        }
                    }
                }
            }
        }
    }

    // the stores read a copy of acc (see the masks above)
    var out: array<f32, 128>;
    for (var t = 0u; t < TM * VC; t++) {
        out[t] = acc[t];
    }
    for (var r = 0u; r < TM; r++) {
        let row = r0 + r;
        let l = subgroupAdd(sum[r]);
        if (row >= rows) {
            continue;
        }
        if (params.splits == 1u) {
            let rr = row;
            let qh = kvh * params.group + rr / params.q_len;
            let i = rr % params.q_len;
            let obase = b * params.o_sb + qh * params.o_sh + i * params.o_sr;
            for (var t = 0u; t < VC; t++) {
                let col = out_col(t, lane);
                if (col < vd) {
                    store_o(obase + col, os_finish(out[r * VC + t], l));
                }
            }
        } else {
            // partial triple: part[batch][kv_heads][rows][splits][2 + v_dim]
            let pbase = (((b * params.kv_heads + kvh) * rows + row) * params.splits + split) * (vd + 2u);
            if (lane == 0u) {
                store_part(pbase, bitcast<u32>(mx[r]));
                store_part(pbase + 1u, bitcast<u32>(l));
            }
            for (var t = 0u; t < VC; t++) {
                let col = out_col(t, lane);
                if (col < vd) {
                    store_part(pbase + 2u + col, bitcast<u32>(out[r * VC + t]));
                }
            }
        }
    }
}
