// Rotary position embedding. Each row of `x` is one head's vector of `d` elements at one
// position; its first `rot` elements are rotated in pairs by angle pos * inv_freq[i],
// the rest are copied. Pairs are (2i, 2i+1) in the interleaved layout (GPT-J, llama.cpp's
// default) and (i, i + rot/2) in the split-halves layout (GPT-NeoX, Hugging Face Llama).
//
//   row r, position pos = (r / div) % seq + offset
//
// (div = heads for [.., seq, heads, d] tensors, 1 for [.., heads, seq, d]); the offset
// lets decode rotate one new token at its place in the sequence.
//
// The kernel computes no angle: cos and sin come from the host's table of the call's
// positions, `table[(pos - offset) * rot/2 + i]` = (cos, sin) as f32 bit patterns, taken in
// f64 of the exact angle. An f32 angle pos * inv_freq is off by up to half an ulp of the
// angle (0.5 rad at pos 8e6), and Vulkan only bounds sin/cos to 2^-11 on [-pi, pi].
// One invocation per output word (elements 2w, 2w+1; d is even).

// #header
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
fn load2_x(w: u32) -> vec2<f32> { return vec2<f32>(x[2u * w], x[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> table: array<u32>;
fn load_table(i: u32) -> u32 { return table[i]; }
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
fn store_y(i: u32, v: f32) { y[i] = v; }
fn store2_y(w: u32, v: vec2<f32>) { y[2u * w] = v.x; y[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    d: u32,
    rot: u32,
    halves: u32,
    div: u32,
    seq: u32,
    _pad0: u32,
    _pad1: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP: u32 = 256u;

fn rotated(e: u32) -> f32 {
    let row = e / params.d;
    let j = e - row * params.d;
    if (j >= params.rot) {
        return load_x(e);
    }
    let s = (row / params.div) % params.seq;
    let h = params.rot / 2u;
    var i: u32;
    var first: bool;
    var partner: u32;
    if (params.halves != 0u) {
        first = j < h;
        i = select(j - h, j, first);
        partner = select(e - h, e + h, first);
    } else {
        first = (j & 1u) == 0u;
        i = j / 2u;
        partner = select(e - 1u, e + 1u, first);
    }
    let t = 2u * (s * h + i);
    let c = bitcast<f32>(load_table(t));
    let sn = bitcast<f32>(load_table(t + 1u));
    let v = load_x(e);
    let p = load_x(partner);
    if (first) {
        return v * c - p * sn;
    }
    return p * sn + v * c;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    let i0 = 2u * w;
    if (i0 >= params.n) {
        return;
    }
    store2_y(w, vec2<f32>(rotated(i0), rotated(i0 + 1u)));
}
