// Reductions over the last dimension: sum, mean, max, argmax. One workgroup per row;
// the lanes stride over the row in 32-bit words, then reduce across the workgroup
// (shared memory, or subgroup operations where the adapter has them).
//
// max and argmax compare order-preserving u32 keys (the IEEE bit pattern with the sign
// folded in), with every NaN mapped to the largest key: max returns NaN when the row
// holds one, argmax returns the first NaN's index (NumPy's rule), and ties go to the
// lowest index. Integer keys make the reduction exact and identical on every adapter,
// whatever its float max() does with NaN.

// #header
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
fn load2_x(w: u32) -> vec2<f32> { return vec2<f32>(x[2u * w], x[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
fn store_y(i: u32, v: f32) { y[i] = v; }
fn store2_y(w: u32, v: vec2<f32>) { y[2u * w] = v.x; y[2u * w + 1u] = v.y; }
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
fn store_idx(i: u32, v: u32) { idx[i] = v; }
// #end header

struct Params {
    n: u32,
    rows: u32,
    _pad0: u32,
    _pad1: u32,
}
@group(0) @binding(3) var<uniform> params: Params;

// 0 sum, 1 mean, 2 max, 3 argmax (writes the max to y as well)
override OP: u32 = 0u;
override WORKGROUP: u32 = 256u;

// #piece row_reduce
// Workgroup-wide reductions through shared memory: a tree over the WORKGROUP lanes
// (a power of two, at most 256). Every lane gets the same result. On adapters with
// SUBGROUP the launcher swaps this block for shaders/common/row_reduce_subgroup.wgsl, which reduces
// inside each subgroup in registers first. Call reduce_init once, from uniform control
// flow, before any reduction; call the reductions from uniform control flow.
var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
var<private> red_lid: u32;

fn reduce_init(lid: u32) {
    red_lid = lid;
}

fn wg_sum(v: f32) -> f32 {
    red_f[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_f[red_lid] = red_f[red_lid] + red_f[red_lid + s];
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32) -> f32 {
    red_f[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_f[red_lid] = max(red_f[red_lid], red_f[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn wg_max_u32(v: u32) -> u32 {
    red_u[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_u[red_lid] = max(red_u[red_lid], red_u[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}

fn wg_min_u32(v: u32) -> u32 {
    red_u[red_lid] = v;
    workgroupBarrier();
    for (var s = WORKGROUP / 2u; s > 0u; s = s / 2u) {
        if (red_lid < s) {
            red_u[red_lid] = min(red_u[red_lid], red_u[red_lid + s]);
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}
// #end piece row_reduce

fn key(v: f32) -> u32 {
    var b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return 0xffffffffu;
    }
    if (b == 0x80000000u) {
        // -0 ties with +0
        b = 0u;
    }
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn unkey(k: u32) -> f32 {
    if (k == 0xffffffffu) {
        // all ones is itself a NaN pattern
        return bitcast<f32>(k);
    }
    if ((k & 0x80000000u) != 0u) {
        return bitcast<f32>(k & 0x7fffffffu);
    }
    return bitcast<f32>(~k);
}

var<private> best_key: u32;
var<private> best_idx: u32;
var<private> acc: f32;

fn take(v: f32, j: u32) {
    if (OP <= 1u) {
        acc += v;
    } else {
        // strictly greater: the first index wins a tie within a lane (lanes visit their
        // columns in increasing order)
        let k = key(v);
        if (k > best_key) {
            best_key = k;
            best_idx = j;
        }
    }
}

// Both elements of word w of the row starting at element base.
fn take_word(w: u32, base: u32) {
    let v = load2_x(w);
    let j = 2u * w - base;
    take(v.x, j);
    take(v.y, j + 1u);
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    reduce_init(lid);
    let row = wid.y * groups.x + wid.x;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    let base = row * n;
    let head = base & 1u;
    let tail = (base + n) & 1u;
    let w0 = (base + head) / 2u;
    let w1 = (base + n) / 2u;
    acc = 0.0;
    best_key = 0u;
    best_idx = 0xffffffffu;
    if (lid == 0u && head == 1u) {
        take(load_x(base), 0u);
    }
    // 8 words per iteration: lavapipe ends an invocation's loops after 65,535
    // iterations in all (see softmax.wgsl).
    var w = w0 + lid;
    for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
        take_word(w, base);
        take_word(w + WORKGROUP, base);
        take_word(w + 2u * WORKGROUP, base);
        take_word(w + 3u * WORKGROUP, base);
        take_word(w + 4u * WORKGROUP, base);
        take_word(w + 5u * WORKGROUP, base);
        take_word(w + 6u * WORKGROUP, base);
        take_word(w + 7u * WORKGROUP, base);
    }
    for (; w < w1; w += WORKGROUP) {
        take_word(w, base);
    }
    if (lid == WORKGROUP - 1u && tail == 1u) {
        take(load_x(base + n - 1u), n - 1u);
    }
    if (OP <= 1u) {
        let total = wg_sum(acc);
        if (lid == 0u) {
            store_y(row, select(total, total / f32(n), OP == 1u));
        }
    } else {
        let k = wg_max_u32(best_key);
        // the lowest column holding the winning key (lanes without it offer u32 max)
        let idx = wg_min_u32(select(0xffffffffu, best_idx, best_key == k));
        if (lid == 0u) {
            store_y(row, unkey(k));
            if (OP == 3u) {
                store_idx(row, idx);
            }
        }
    }
}

// Short rows (a few dozen elements): one invocation per row, WORKGROUP rows per
// workgroup, no cross-lane reduction; same keys, same tie and NaN rules.
@compute @workgroup_size(WORKGROUP)
fn short_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    let base = row * n;
    acc = 0.0;
    best_key = 0u;
    best_idx = 0xffffffffu;
    for (var j = 0u; j < n; j++) {
        take(load_x(base + j), j);
    }
    if (OP <= 1u) {
        store_y(row, select(acc, acc / f32(n), OP == 1u));
    } else {
        store_y(row, unkey(best_key));
        if (OP == 3u) {
            store_idx(row, best_idx);
        }
    }
}
