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
