//! PyTorch beside our rows: a peer script (benches/peers/) kept running for a whole
//! family, one request line in, one answer line out, and windows of ours alternating
//! with windows of the peer's so that both sides are timed in the same phases of a host
//! whose speed drifts (this one moved 2× between minutes).

use super::shapes::Tier;
use super::{skip, Sampled};
use openkern::Device;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A peer script's process: started once, asked line by line, killed on drop.
pub struct PeerProcess {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl PeerProcess {
    /// `python3 benches/peers/<script> <args>` with `env` set, once it has printed its
    /// `ready` line; None (after saying why) without python3 or torch.
    pub fn start(script: &str, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Option<Self> {
        let path = format!(
            "{}/../../benches/peers/{script}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut command = Command::new("python3");
        command
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .map_err(|e| skip(&format!("torch peer {script}: python3 did not start ({e})")))
            .ok()?;
        let (to, from) = (child.stdin.take()?, child.stdout.take()?);
        let mut peer = PeerProcess {
            child,
            to,
            from: BufReader::new(from),
        };
        if !peer.line().is_some_and(|l| l.starts_with("ready")) {
            skip(&format!(
                "torch peer {script}: torch is not installed (pip install torch) — rows run alone"
            ));
            return None;
        }
        Some(peer)
    }

    /// The next answer line, or None once the peer has exited.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.from.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim().to_string()),
            _ => None,
        }
    }

    /// Sends `request` and parses the answer as seconds.
    pub fn seconds(&mut self, request: &str) -> Option<f64> {
        writeln!(self.to, "{request}").ok()?;
        self.to.flush().ok()?;
        self.line()?.parse().ok()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long our side waits after a peer window before timing its own: torch's OpenMP
/// workers spin for a while after their last parallel region, on the cores our window
/// runs on (with no wait, 20 ms `linear-torch` windows ran at 0.7–0.9× their speed
/// alone and the rows read 0.69–1.36× torch; after 30 ms or 100 ms, 1.10–1.90× both).
/// Making torch wait passively instead (`OMP_WAIT_POLICY=PASSIVE`, as the one-op-a-row
/// pointwise peer does) slowed its encoder forward, a hundred short ops, by 15–30 %.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(30);

/// Our `f` and the peer's computation in alternating windows of the same number of
/// calls, sized to about `window` seconds of ours: the tier's sample count of rounds
/// (3 quick, 5 default, 7 full), and outside `--quick` more while the windows add up
/// to less than `total` seconds of ours (at most 15), [`SETTLE`] after each of the
/// peer's. `peer_window(n)` times n calls of the peer's and returns its seconds per call. Returns our samples and the peer's
/// median (None if it stopped answering, after saying so).
pub fn alternating(
    device: &Device,
    mut f: impl FnMut() -> openkern::Result<()>,
    window: f64,
    total: f64,
    mut peer_window: impl FnMut(usize) -> Option<f64>,
) -> openkern::Result<(Sampled, Option<f64>)> {
    f()?;
    device.sync()?;
    let first = device.time(1, &mut f)?;
    let tier = super::tier();
    let iters = (window / first.seconds.max(1e-7)).clamp(1.0, 500.0) as usize;
    let per_window = iters as f64 * first.seconds.max(1e-7);
    let rounds = super::tier_samples(tier);
    let rounds = if tier == Tier::Quick {
        rounds
    } else {
        rounds.max(((total / per_window).ceil() as usize).min(15))
    };
    let (mut ours, mut theirs) = (Vec::new(), Some(Vec::new()));
    for _ in 0..rounds {
        ours.push(device.time(iters, &mut f)?.seconds);
        theirs = theirs.and_then(|mut v: Vec<f64>| {
            v.push(peer_window(iters)?);
            Some(v)
        });
        std::thread::sleep(SETTLE);
    }
    if theirs.is_none() {
        skip("torch peer: stopped answering; the row runs alone");
    }
    let theirs = theirs.map(|v| Sampled::of(v, first.source).median);
    Ok((Sampled::of(ours, first.source), theirs))
}
