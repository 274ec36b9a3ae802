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
