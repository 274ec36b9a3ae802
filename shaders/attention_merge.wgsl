// Merge pass of split-KV attention (flash-decoding): combines the (max, sum, output)
// triples that shaders/attention.wgsl wrote per key split into the final rows. With
// M = max_s m_s, each split's sum and output are rescaled by exp(m_s - M) and added;
// the row is out / sum (0 when no split saw a visible key). One workgroup per row.

// #header
@group(0) @binding(0) var<storage, read> part: array<u32>;
fn load_part(i: u32) -> u32 { return part[i]; }
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
fn store_o(i: u32, v: f32) { o[i] = v; }
fn store2_o(w: u32, v: vec2<f32>) { o[2u * w] = v.x; o[2u * w + 1u] = v.y; }
// #end header

struct Params {
    batch: u32,
    kv_heads: u32,
    group: u32,
    q_len: u32,
    v_dim: u32,
    splits: u32,
    o_sb: u32,
    o_sh: u32,
    o_sr: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

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

@compute @workgroup_size(64)
fn merge(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let flat = wid.y * groups.x + wid.x;
    let rows = params.group * params.q_len;
    if (flat >= params.batch * params.kv_heads * rows) {
        return;
    }
    let r = flat % rows;
    let bh = flat / rows;
    let kvh = bh % params.kv_heads;
    let b = bh / params.kv_heads;
    let qh = kvh * params.group + r / params.q_len;
    let i = r % params.q_len;
    let width = params.v_dim + 2u;
    let base = flat * params.splits * width;
    var mx = OS_EMPTY;
    for (var s = 0u; s < params.splits; s++) {
        mx = max(mx, bitcast<f32>(load_part(base + s * width)));
    }
    var l = 0.0;
    for (var s = 0u; s < params.splits; s++) {
        let ms = bitcast<f32>(load_part(base + s * width));
        l += bitcast<f32>(load_part(base + s * width + 1u)) * os_rescale(ms, mx);
    }
    let obase = b * params.o_sb + qh * params.o_sh + i * params.o_sr;
    for (var d = lid; d < params.v_dim; d += 64u) {
        var a = 0.0;
        for (var s = 0u; s < params.splits; s++) {
            let ms = bitcast<f32>(load_part(base + s * width));
            a += bitcast<f32>(load_part(base + s * width + 2u + d)) * os_rescale(ms, mx);
        }
        store_o(obase + d, os_finish(a, l));
    }
}
