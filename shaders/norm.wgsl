// Layer norm and RMS norm over the last dimension, one workgroup per row, optionally
// fused with the residual add that precedes them in a transformer block:
//
//   h = x + res                      (RESIDUAL; h is written out: the new residual stream)
//   RMS:   y = h / sqrt(mean(h^2) + eps) * w
//   LAYER: y = (h - mean(h)) / sqrt(var(h) + eps) * w + b
//   L2:    y = x / max(sqrt(sum(x^2)), eps)          (no weight, no residual)
//
// A row whose statistic is not finite (it holds NaN or +-inf, or its squares overflow
// f32) comes out NaN in every element, on every backend: rstd is NaN, never a 0 that
// would turn the row's finite elements into zeros.
//
// The fusion saves a full pass over memory: h is computed, written and reduced in one
// read of x and res. Layer norm takes the variance as mean((h - mean)^2) in a second pass
// over the (cached) row rather than E[h^2] - E[h]^2, which cancels catastrophically when
// |mean| >> std. Statistics and arithmetic are f32; the norm uses the f32 sum h, before
// it is rounded to the storage dtype. Rows are walked in 32-bit words as in softmax.wgsl.

// #header
@group(0) @binding(0) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
fn load2_x(w: u32) -> vec2<f32> { return vec2<f32>(x[2u * w], x[2u * w + 1u]); }
@group(0) @binding(1) var<storage, read> res: array<f32>;
fn load_res(i: u32) -> f32 { return res[i]; }
fn load2_res(w: u32) -> vec2<f32> { return vec2<f32>(res[2u * w], res[2u * w + 1u]); }
@group(0) @binding(2) var<storage, read> weight: array<f32>;
fn load_weight(i: u32) -> f32 { return weight[i]; }
fn load2_weight(w: u32) -> vec2<f32> { return vec2<f32>(weight[2u * w], weight[2u * w + 1u]); }
@group(0) @binding(3) var<storage, read> bias: array<f32>;
fn load_bias(i: u32) -> f32 { return bias[i]; }
fn load2_bias(w: u32) -> vec2<f32> { return vec2<f32>(bias[2u * w], bias[2u * w + 1u]); }
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
fn store_y(i: u32, v: f32) { y[i] = v; }
fn store2_y(w: u32, v: vec2<f32>) { y[2u * w] = v.x; y[2u * w + 1u] = v.y; }
@group(0) @binding(5) var<storage, read_write> h: array<f32>;
fn store_h(i: u32, v: f32) { h[i] = v; }
fn store2_h(w: u32, v: vec2<f32>) { h[2u * w] = v.x; h[2u * w + 1u] = v.y; }
// #end header

struct Params {
    n: u32,
    rows: u32,
    eps: f32,
    // a runtime NaN (a NaN constant is a shader-creation error)
    nan: f32,
}
@group(0) @binding(6) var<uniform> params: Params;

override LAYER: bool = false;
override RESIDUAL: bool = false;
// false for the post-norm forms, which need only the normed sum, not the sum itself
override WRITE_SUM: bool = true;
// F.normalize: x / max(||x||, eps); with LAYER and RESIDUAL false
override L2: bool = false;
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

var<private> row_base: u32;

fn value(i: u32) -> f32 {
    if (RESIDUAL) {
        return load_x(i) + load_res(i);
    }
    return load_x(i);
}

fn value2(w: u32) -> vec2<f32> {
    if (RESIDUAL) {
        return load2_x(w) + load2_res(w);
    }
    return load2_x(w);
}

var<private> mean: f32;
var<private> rstd: f32;

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// 1 / the row's scale from its sum of squares (RMS, L2) or centred sum of squares
// (LAYER), NaN when that sum is not finite.
fn inv_scale(sum_sq: f32, inv_n: f32) -> f32 {
    if (!finite(sum_sq)) {
        return params.nan;
    }
    if (L2) {
        return 1.0 / max(sqrt(sum_sq), params.eps);
    }
    return 1.0 / sqrt(sum_sq * inv_n + params.eps);
}

fn normed(i: u32, v: f32) -> f32 {
    let j = i - row_base;
    if (L2) {
        return v * rstd;
    }
    if (LAYER) {
        return (v - mean) * rstd * load_weight(j) + load_bias(j);
    }
    return v * rstd * load_weight(j);
}

// Word w's share of the first pass (its sum, or sum of squares for RMS); writes h.
fn first_pass_word(w: u32) -> f32 {
    let v = value2(w);
    if (RESIDUAL && WRITE_SUM) {
        store2_h(w, v);
    }
    if (LAYER) {
        return v.x + v.y;
    }
    return v.x * v.x + v.y * v.y;
}

// Word w's centred sum of squares (layer norm's second pass).
fn centred_word(w: u32) -> f32 {
    let d = value2(w) - vec2<f32>(mean);
    return d.x * d.x + d.y * d.y;
}

// Normalises word w and writes it.
fn write_word(w: u32) {
    let v = value2(w);
    store2_y(w, vec2<f32>(normed(2u * w, v.x), normed(2u * w + 1u, v.y)));
}

// #piece row_write_walk
// write_word(w) for each of this lane's words of [w0, w1), WORKGROUP apart. Eight per loop
// iteration: lavapipe ends every loop of an invocation once 65,535 iterations have run in
// all (src/gpu/driver_quirks.rs), which one word per iteration reached near 2^24-element
// rows. The kernel defines write_word.
fn write_words(w0: u32, w1: u32, lane: u32) {
    var w = w0 + lane;
    for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
        write_word(w);
        write_word(w + WORKGROUP);
        write_word(w + 2u * WORKGROUP);
        write_word(w + 3u * WORKGROUP);
        write_word(w + 4u * WORKGROUP);
        write_word(w + 5u * WORKGROUP);
        write_word(w + 6u * WORKGROUP);
        write_word(w + 7u * WORKGROUP);
    }
    for (; w < w1; w += WORKGROUP) {
        write_word(w);
    }
}
// #end piece row_write_walk

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
    row_base = row * n;
    let head = row_base & 1u;
    let tail = (row_base + n) & 1u;
    let w0 = (row_base + head) / 2u;
    let w1 = (row_base + n) / 2u;
    let last = row_base + n - 1u;
    let tail_lane = WORKGROUP - 1u;

    // Pass 1: sum (layer) or sum of squares (RMS); write h.
    // 8 words per iteration: lavapipe ends an invocation's loops after 65,535
    // iterations in all (see softmax.wgsl), and layer norm makes three passes.
    var acc = 0.0;
    var w = w0 + lid;
    for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
        acc += first_pass_word(w) + first_pass_word(w + WORKGROUP)
            + first_pass_word(w + 2u * WORKGROUP) + first_pass_word(w + 3u * WORKGROUP)
            + first_pass_word(w + 4u * WORKGROUP) + first_pass_word(w + 5u * WORKGROUP)
            + first_pass_word(w + 6u * WORKGROUP) + first_pass_word(w + 7u * WORKGROUP);
    }
    for (; w < w1; w += WORKGROUP) {
        acc += first_pass_word(w);
    }
    if (lid == 0u && head == 1u) {
        let v = value(row_base);
        if (RESIDUAL && WRITE_SUM) {
            store_h(row_base, v);
        }
        acc += select(v * v, v, LAYER);
    }
    if (lid == tail_lane && tail == 1u) {
        let v = value(last);
        if (RESIDUAL && WRITE_SUM) {
            store_h(last, v);
        }
        acc += select(v * v, v, LAYER);
    }
    let total = wg_sum(acc);
    let inv_n = 1.0 / f32(n);
    if (LAYER) {
        mean = total * inv_n;
        // Pass 2: centred sum of squares.
        var acc2 = 0.0;
        w = w0 + lid;
        for (; w + 7u * WORKGROUP < w1; w += 8u * WORKGROUP) {
            acc2 += centred_word(w) + centred_word(w + WORKGROUP)
                + centred_word(w + 2u * WORKGROUP) + centred_word(w + 3u * WORKGROUP)
                + centred_word(w + 4u * WORKGROUP) + centred_word(w + 5u * WORKGROUP)
                + centred_word(w + 6u * WORKGROUP) + centred_word(w + 7u * WORKGROUP);
        }
        for (; w < w1; w += WORKGROUP) {
            acc2 += centred_word(w);
        }
        if (lid == 0u && head == 1u) {
            let d = value(row_base) - mean;
            acc2 += d * d;
        }
        if (lid == tail_lane && tail == 1u) {
            let d = value(last) - mean;
            acc2 += d * d;
        }
        let var_sum = wg_sum(acc2);
        rstd = inv_scale(var_sum, inv_n);
    } else {
        mean = 0.0;
        rstd = inv_scale(total, inv_n);
    }

    // Last pass: normalise and write.
    write_words(w0, w1, lid);
    if (lid == 0u && head == 1u) {
        store_y(row_base, normed(row_base, value(row_base)));
    }
    if (lid == tail_lane && tail == 1u) {
        store_y(last, normed(last, value(last)));
    }
}

// Short rows (at most a few dozen elements): one invocation per row, WORKGROUP rows per
// workgroup, no cross-lane reduction; same passes and word-wise stores as main.
@compute @workgroup_size(WORKGROUP)
fn short_rows(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * groups.x + wid.x) * WORKGROUP + lid;
    if (row >= params.rows) {
        return;
    }
    let n = params.n;
    row_base = row * n;
    let head = row_base & 1u;
    let tail = (row_base + n) & 1u;
    let w0 = (row_base + head) / 2u;
    let w1 = (row_base + n) / 2u;
    let last = row_base + n - 1u;
    var acc = 0.0;
    if (head == 1u) {
        let v = value(row_base);
        if (RESIDUAL && WRITE_SUM) {
            store_h(row_base, v);
        }
        acc += select(v * v, v, LAYER);
    }
    for (var w = w0; w < w1; w++) {
        let v = value2(w);
        if (RESIDUAL && WRITE_SUM) {
            store2_h(w, v);
        }
        acc += select(v.x * v.x + v.y * v.y, v.x + v.y, LAYER);
    }
    if (tail == 1u) {
        let v = value(last);
        if (RESIDUAL && WRITE_SUM) {
            store_h(last, v);
        }
        acc += select(v * v, v, LAYER);
    }
    let inv_n = 1.0 / f32(n);
    mean = 0.0;
    rstd = inv_scale(acc, inv_n);
    if (LAYER) {
        mean = acc * inv_n;
        var acc2 = 0.0;
        for (var i = row_base; i <= last; i++) {
            let d = value(i) - mean;
            acc2 += d * d;
        }
        rstd = inv_scale(acc2, inv_n);
    }
    if (head == 1u) {
        store_y(row_base, normed(row_base, value(row_base)));
    }
    for (var w = w0; w < w1; w++) {
        let v = value2(w);
        store2_y(w, vec2<f32>(normed(2u * w, v.x), normed(2u * w + 1u, v.y)));
    }
    if (tail == 1u) {
        store_y(last, normed(last, value(last)));
    }
}
