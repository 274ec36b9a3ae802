//! The Burn peer (benches/peers/burn/: Burn 0.22.1 on its wgpu backend, a cargo project
//! outside the workspace), run right after openkern's row on the comparison
//! shapes ([`cases`]) so the two are interleaved on the same adapter in the same minute.
//!
//! The peer is started once per run and fed one case per stdin line; it answers each
//! with one line, its median seconds per call after warm-up and autotune (or `error
//! <why>`). Burn rows run with `--filter burn` (those cases only; `--filter burn:gemm`
//! and the like for some of them) or `--full`, on GPU devices; where the binary is not built (`benches/peers/burn/target/release/
//! openkern-burn-peer`, or the path in `OPENKERN_BURN_PEER`) the rows run alone and one
//! message says so.

use super::shapes::Case;
use super::{skip, BenchArgs, Row};
use openkern::Device;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// The peer's name in rows and files.
pub const NAME: &str = "burn";

/// The cases of issue #11 that run beside Burn: square matmul and the two linear shapes
/// (`x[M,K]·W[N,K]ᵀ`) in f32 and f16, softmax over the last dim of 4096 × 4096 f32, and
/// causal attention h8 s1024 d64 f32 (batch 1).
pub fn cases() -> Vec<Case> {
    let case = |family: &str, op: &str, model: &str, phase: &str, shape: &[usize], dt: &str| Case {
        family: family.into(),
        op: op.into(),
        model: model.into(),
        phase: phase.into(),
        shape: shape.to_vec(),
        dtype: dt.into(),
    };
    let mut out = Vec::new();
    for n in [256, 512, 1024, 2048] {
        for dt in ["f32", "f16"] {
            out.push(case("gemm", "matmul", "", "", &[n, n, n], dt));
        }
    }
    for dt in ["f32", "f16"] {
        // a BERT-style encoder's FFN down at 72 tokens, and the 8B model's o projection
        // at 512 tokens (the same key as the full tier's row)
        out.push(case(
            "linear",
            "linear.encoder_ffn_down",
            "",
            "prefill",
            &[72, 384, 1536],
            dt,
        ));
        out.push(case(
            "linear",
            "linear.o",
            "8b",
            "prefill",
            &[512, 4096, 4096],
            dt,
        ));
    }
    out.push(case("softmax", "softmax", "", "", &[4096, 4096], "f32"));
    out.push(case(
        "attention",
        "attention",
        "",
        "prefill",
        &[8, 8, 1024, 1024, 64],
        "f32",
    ));
    out
}

/// Whether this run times Burn: `--filter` names `burn`, or `--full`.
pub fn wanted(args: &BenchArgs) -> bool {
    !args.quick && (args.names(NAME) || args.full)
}

/// The Burn cases of `family` this run adds to the tier's: all of them with `--filter
/// burn`, those matching `TEXT` with `--filter burn:TEXT` (a family, op or phase, e.g.
/// `burn:gemm`; several such words are a union), narrowed further by `burn:` words that
/// name a shape (`burn:1024x1024x1024`, dims joined by `x`) or a dtype (`burn:f16`), each
/// kind a union of its own; those the filter selects with `--full`; none otherwise.
/// The shape words let one size run at a time: on a software adapter Burn's 2048³
/// takes minutes with its autotune.
pub fn extra_cases(args: &BenchArgs, family: &str) -> Vec<Case> {
    if !wanted(args) {
        return Vec::new();
    }
    let filter = args.filter.as_deref();
    let by_name = args.names(NAME);
    let words: Vec<&str> = filter
        .into_iter()
        .flat_map(|f| f.split(','))
        .filter_map(|w| w.strip_prefix("burn:"))
        .collect();
    let is_shape = |w: &&str| w.split('x').all(|d| d.parse::<usize>().is_ok());
    let is_dtype = |w: &&str| ["f32", "f16", "bf16"].contains(w);
    let shapes: Vec<&str> = words.iter().copied().filter(is_shape).collect();
    let dtypes: Vec<&str> = words.iter().copied().filter(is_dtype).collect();
    let names: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !is_shape(w) && !is_dtype(w))
        .collect();
    cases()
        .into_iter()
        .filter(|c| c.family == family)
        .filter(|c| {
            if !by_name {
                return c.matches(filter);
            }
            let shape = c.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>();
            let shape = shape.join("x");
            (names.is_empty() || names.iter().any(|n| c.matches(Some(n))))
                && (shapes.is_empty() || shapes.contains(&shape.as_str()))
                && (dtypes.is_empty() || dtypes.contains(&c.dtype.as_str()))
        })
        .collect()
}

/// The protocol line for `case`, or None for a case the peer does not run (attention
/// with grouped heads or unequal lengths, shapes outside the families above).
pub fn line(case: &Case) -> Option<String> {
    let dt = &case.dtype;
    let s = &case.shape;
    match (case.family.as_str(), s.as_slice()) {
        ("gemm", &[m, n, k]) => Some(format!("matmul {dt} {m} {n} {k}")),
        ("linear", &[m, n, k]) => Some(format!("linear {dt} {m} {n} {k}")),
        ("softmax", [.., cols]) if case.op == "softmax" => {
            let rows: usize = s[..s.len() - 1].iter().product();
            Some(format!("softmax {dt} {rows} {cols}"))
        }
        ("attention", &[hq, hk, ql, kl, d]) if hq == hk && ql == kl => {
            Some(format!("attention {dt} {hq} {ql} {d} causal"))
        }
        _ => None,
    }
}

/// One answer line: seconds, or the peer's `error <why>`.
pub fn parse_answer(line: &str) -> Result<f64, String> {
    let line = line.trim();
    if let Some(why) = line.strip_prefix("error") {
        return Err(why.trim().to_string());
    }
    match line.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!("unreadable answer {line:?}")),
    }
}

/// Where the peer binary is: `OPENKERN_BURN_PEER`, else the peer project's release build.
fn binary() -> PathBuf {
    std::env::var_os("OPENKERN_BURN_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../benches/peers/burn/target/release/openkern-burn-peer"
            ))
        })
}

/// The running peer process.
struct Peer {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts the peer and reads its `ready` line; Err says why not.
    fn start() -> Result<Peer, String> {
        let path = binary();
        if !path.is_file() {
            return Err(format!(
                "not built at {} (cargo build --release --manifest-path \
                 benches/peers/burn/Cargo.toml, or set OPENKERN_BURN_PEER)",
                path.display()
            ));
        }
        let mut child = Command::new(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{} did not start ({e})", path.display()))?;
        let to = child.stdin.take().ok_or("no stdin")?;
        let mut from = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut ready = String::new();
        let _ = from.read_line(&mut ready);
        let Some(what) = ready.trim().strip_prefix("ready ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("it did not say ready (said {:?})", ready.trim()));
        };
        println!("Burn peer: {what}");
        Ok(Peer { child, to, from })
    }

    /// Asks for one case's seconds.
    fn seconds(&mut self, line: &str) -> Result<f64, String> {
        writeln!(self.to, "{line}")
            .and_then(|_| self.to.flush())
            .map_err(|e| format!("peer gone ({e})"))?;
        let mut answer = String::new();
        match self.from.read_line(&mut answer) {
            Ok(0) | Err(_) => Err("peer exited".into()),
            Ok(_) => parse_answer(&answer),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's state for the whole run: not asked yet, running, or unavailable (said once).
enum State {
    NotStarted,
    Running(Peer),
    Unavailable,
}

static PEER: Mutex<State> = Mutex::new(State::NotStarted);

/// Burn's seconds for `case` on this adapter, or None (a GPU device only; a missing
/// binary is reported once per run, a case the peer fails on once per case).
pub fn seconds(device: &Device, case: &Case) -> Option<f64> {
    if device.is_cpu() {
        return None;
    }
    let line = line(case)?;
    let mut state = PEER.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*state, State::NotStarted) {
        *state = match Peer::start() {
            Ok(p) => State::Running(p),
            Err(why) => {
                skip(&format!("the Burn peer: {why} — rows run without it"));
                State::Unavailable
            }
        };
    }
    let State::Running(peer) = &mut *state else {
        return None;
    };
    match peer.seconds(&line) {
        Ok(s) => Some(s),
        Err(why) => {
            skip(&format!("Burn on {line:?}: {why}"));
            if why.starts_with("peer") {
                *state = State::Unavailable;
            }
            None
        }
    }
}

/// When this run times Burn and `case` is one of [`cases`]: asks Burn for the same case
/// and sets `row.peer` to its rate, then times `f` (one run of openkern's op, already
/// warmed up by the row's own timing) by wall clock around a sync, as the peer times
/// itself, into `row.wall_seconds` (not without a Burn answer: it would compare nothing).
pub fn attach(
    device: &Device,
    args: &BenchArgs,
    case: &Case,
    row: &mut Row,
    mut f: impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<()> {
    if !wanted(args) || device.is_cpu() || !cases().contains(case) {
        return Ok(());
    }
    if let Some(s) = seconds(device, case) {
        row.peer = Some((NAME, row.work / s));
        row.wall_seconds = Some(wall_clock(device, row.seconds, &mut f)?);
    }
    Ok(())
}

/// Median seconds per run of `f` by wall clock: windows of `n` runs and a sync, `n`
/// sized from `estimate` so a window lasts about 30 ms, 5 windows (3 when a run takes
/// over a quarter second): the peer's own method (benches/peers/burn/src/main.rs).
fn wall_clock(
    device: &Device,
    estimate: f64,
    f: &mut impl FnMut() -> openkern::Result<()>,
) -> openkern::Result<f64> {
    let want = if estimate > 0.25 { 3 } else { 5 };
    let n = (0.03 / estimate.max(1e-7)).clamp(1.0, 500.0) as usize;
    device.sync()?;
    let mut samples = Vec::with_capacity(want);
    for _ in 0..want {
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            f()?;
        }
        device.sync()?;
        samples.push(t0.elapsed().as_secs_f64() / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_a_protocol_line() {
        for c in cases() {
            assert!(line(&c).is_some(), "{c:?}");
        }
        let c = &cases()[0];
        assert_eq!(line(c).as_deref(), Some("matmul f32 256 256 256"));
        let att = cases()
            .into_iter()
            .find(|c| c.family == "attention")
            .unwrap();
        assert_eq!(
            line(&att).as_deref(),
            Some("attention f32 8 1024 64 causal")
        );
        let sm = cases().into_iter().find(|c| c.family == "softmax").unwrap();
        assert_eq!(line(&sm).as_deref(), Some("softmax f32 4096 4096"));
    }

    #[test]
    fn answers_parse_or_say_why() {
        assert_eq!(parse_answer("0.0125\n"), Ok(0.0125));
        assert_eq!(
            parse_answer("error dtype \"bf16\"").unwrap_err(),
            "dtype \"bf16\""
        );
        assert!(parse_answer("").is_err());
        assert!(parse_answer("NaN").is_err());
        assert!(parse_answer("-1").is_err());
    }

    #[test]
    fn the_filter_picks_the_burn_cases() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let args = |a: &[&str]| Cli::parse_from([&["bench"], a].concat()).bench;
        let count = |a: &BenchArgs, f: &str| extra_cases(a, f).len();
        // the default run adds none
        assert_eq!(count(&args(&[]), "gemm"), 0);
        let all = args(&["--filter", "burn"]);
        assert_eq!(count(&all, "gemm"), 8);
        assert_eq!(count(&all, "linear"), 4);
        assert_eq!(count(&all, "softmax") + count(&all, "attention"), 2);
        let some = args(&["--filter", "burn:softmax,burn:attention"]);
        assert_eq!(count(&some, "gemm"), 0);
        assert_eq!(count(&some, "softmax") + count(&some, "attention"), 2);
        // shape and dtype words narrow the named cases
        let one = args(&["--filter", "burn:gemm,burn:1024x1024x1024,burn:f16"]);
        assert_eq!(count(&one, "gemm"), 1);
        let sizes = args(&["--filter", "burn:256x256x256,burn:72x384x1536"]);
        assert_eq!(count(&sizes, "gemm") + count(&sizes, "linear"), 4);
        // --full adds those its filter selects
        assert_eq!(count(&args(&["--full", "--filter", "gemm"]), "gemm"), 8);
        assert_eq!(count(&args(&["--full", "--filter", "gemm"]), "linear"), 0);
        assert_eq!(count(&args(&["--quick", "--filter", "burn"]), "gemm"), 0);
    }

    #[test]
    fn a_missing_binary_is_a_reason_not_a_panic() {
        // the env var is read per call; point it at nothing
        std::env::set_var("OPENKERN_BURN_PEER", "/nonexistent/openkern-burn-peer");
        let why = Peer::start().err().expect("no binary there");
        assert!(why.contains("not built"), "{why}");
    }
}
