// KV-cache append: writes new key/value rows into the preallocated caches
// [batch, kv_heads, max_len, dim] at each batch entry's position (a u32 tensor on the
// device: [batch], or [1] shared), and records the entry's new valid length. An entry
// whose rows would run past max_len is not written; the first such entry goes into the
// device's fault word (kind 2), which the next read reports as an error.
// One invocation per element of the new rows (keys, then values).

// #header
@group(0) @binding(0) var<storage, read> k_new: array<f32>;
fn load_k_new(i: u32) -> f32 { return k_new[i]; }
fn load2_k_new(w: u32) -> vec2<f32> { return vec2<f32>(k_new[2u * w], k_new[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> v_new: array<f32>;
fn load_v_new(i: u32) -> f32 { return v_new[i]; }
fn load2_v_new(w: u32) -> vec2<f32> { return vec2<f32>(v_new[2u * w], v_new[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read> pos: array<u32>;
fn load_pos(i: u32) -> u32 { return pos[i]; }
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
fn store_k_cache(i: u32, v: f32) { k_cache[i] = v; }
fn store2_k_cache(w: u32, v: vec2<f32>) { k_cache[2u * w] = v.x; k_cache[2u * w + 1u] = v.y; }
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
fn store_v_cache(i: u32, v: f32) { v_cache[i] = v; }
fn store2_v_cache(w: u32, v: vec2<f32>) { v_cache[2u * w] = v.x; v_cache[2u * w + 1u] = v.y; }
@group(0) @binding(5) var<storage, read_write> lens: array<u32>;
fn store_lens(i: u32, v: u32) { lens[i] = v; }
// #end header

struct Params {
    batch: u32,
    kv_heads: u32,
    // new rows per entry and head
    n: u32,
    max_len: u32,
    head_dim: u32,
    v_dim: u32,
    // 1: one position for all entries; else one per entry
    pos_count: u32,
    _pad0: u32,
    // element strides (batch, head, row) of k_new and v_new
    k_sb: u32,
    k_sh: u32,
    k_sr: u32,
    v_sb: u32,
    v_sh: u32,
    v_sr: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(6) var<uniform> params: Params;
// [kind, value, position, bound]; kind 2 = append past the cache: value = end row,
// position = batch entry, bound = max_len.
@group(0) @binding(7) var<storage, read_write> fault: array<atomic<u32>, 4>;

override WORKGROUP: u32 = 256u;

fn report_overflow(end: u32, b: u32) {
    loop {
        let r = atomicCompareExchangeWeak(&fault[0], 0u, 2u);
        if (r.exchanged) {
            atomicStore(&fault[1], end);
            atomicStore(&fault[2], b);
            atomicStore(&fault[3], params.max_len);
            return;
        }
        if (r.old_value != 0u) {
            return;
        }
    }
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    let width = params.head_dim + params.v_dim;
    if (e >= params.batch * params.kv_heads * params.n * width) {
        return;
    }
    let c = e % width;
    var rest = e / width;
    let t = rest % params.n;
    rest = rest / params.n;
    let h = rest % params.kv_heads;
    let b = rest / params.kv_heads;
    var p = load_pos(0u);
    if (params.pos_count > 1u) {
        p = load_pos(b);
    }
    let first = c == 0u && t == 0u && h == 0u;
    if (p > params.max_len || params.n > params.max_len - p) {
        if (first) {
            report_overflow(min(p, 0xffffffffu - params.n) + params.n, b);
        }
        return;
    }
    if (first) {
        store_lens(b, p + params.n);
    }
    let row = (b * params.kv_heads + h) * params.max_len + p + t;
    if (c < params.head_dim) {
        store_k_cache(row * params.head_dim + c,
                      load_k_new(b * params.k_sb + h * params.k_sh + t * params.k_sr + c));
    } else {
        let cv = c - params.head_dim;
        store_v_cache(row * params.v_dim + cv,
                      load_v_new(b * params.v_sb + h * params.v_sh + t * params.v_sr + cv));
    }
}
