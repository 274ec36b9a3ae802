// Embedding gather: out[r, :] = table[ids[r], :]. One invocation per output word pair.
// An id at or past the vocabulary size is never read through: its row is written as
// zeros and the first such id goes into the device's fault word, which the next read
// reports as an error (ids made on the GPU, e.g. by argmax, cannot be checked before).

// #header
@group(0) @binding(0) var<storage, read> ids: array<u32>;
fn load_ids(i: u32) -> u32 { return ids[i]; }
@group(0) @binding(1) var<storage, read> table: array<f32>;
fn load_table(i: u32) -> f32 { return table[i]; }
fn load2_table(w: u32) -> vec2<f32> { return vec2<f32>(table[2u * w], table[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn store_out(i: u32, v: f32) { out[i] = v; }
fn store2_out(w: u32, v: vec2<f32>) { out[2u * w] = v.x; out[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    d: u32,
    vocab: u32,
    _pad: u32,
}
@group(0) @binding(3) var<uniform> params: Params;
// [kind, value, position, bound]; kind 1 = index out of range. The first faulting
// invocation (the one that moves kind from 0) fills in the rest.
@group(0) @binding(4) var<storage, read_write> fault: array<atomic<u32>, 4>;

override WORKGROUP: u32 = 256u;

fn gather(e: u32) -> f32 {
    let r = e / params.d;
    let c = e - r * params.d;
    let id = load_ids(r);
    if (id >= params.vocab) {
        if (atomicMax(&fault[0], 1u) == 0u) {
            atomicStore(&fault[1], id);
            atomicStore(&fault[2], r);
            atomicStore(&fault[3], params.vocab);
        }
        return 0.0;
    }
    return load_table(id * params.d + c);
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
    if (i0 + 1u < params.n) {
        store2_out(w, vec2<f32>(gather(i0), gather(i0 + 1u)));
    } else {
        store_out(i0, gather(i0));
    }
}
