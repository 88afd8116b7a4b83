//! Running every server of a benchmark round after round, side by side.
//!
//! Each round starts one server later than the last, so no server always
//! runs first (on a shared machine the load drifts within a round). A
//! server whose run fails once is left out for the rest of the benchmark:
//! its later rounds are `None`, and the failure is kept for the exit
//! status. Servers are compared round by round ([`paired_ratio`]), so
//! that drift between rounds cancels out.

use std::collections::HashMap;

use crate::median;
use crate::server::ServerSpec;

/// Each server's samples, one per round (`None`: failed or left out).
pub type Samples<T> = HashMap<String, Vec<Option<T>>>;

/// The median over rounds of the per-round ratio `figure(a) / figure(b)`
/// between two servers' samples, round by round; a round either failed
/// in is left out (NaN if none is left).
pub fn paired_ratio<S>(a: &[Option<S>], b: &[Option<S>], figure: impl Fn(&S) -> f64) -> f64 {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| Some(figure(x.as_ref()?) / figure(y.as_ref()?)))
        .collect();
    median(&ratios)
}

/// [`paired_ratio`] between servers `name` and `reference` of `samples`;
/// NaN if either has no samples.
pub fn ratio_to<S>(
    samples: &Samples<S>,
    name: &str,
    reference: &str,
    figure: impl Fn(&S) -> f64,
) -> f64 {
    match (samples.get(name), samples.get(reference)) {
        (Some(a), Some(b)) => paired_ratio(a, b, figure),
        _ => f64::NAN,
    }
}

/// The samples of server `name` from the rounds it did not fail in
/// (none if it is not in `samples`).
///
/// ```
/// use twill_bench::rotation::{successes, Samples};
///
/// let samples: Samples<u32> = [("a".to_string(), vec![Some(1), None, Some(3)])].into();
/// assert_eq!(successes(&samples, "a"), vec![&1, &3]);
/// assert!(successes(&samples, "b").is_empty());
/// ```
pub fn successes<'a, S>(samples: &'a Samples<S>, name: &str) -> Vec<&'a S> {
    samples
        .get(name)
        .map(|v| v.iter().flatten().collect())
        .unwrap_or_default()
}

/// The failures of a whole benchmark run, across its scenarios.
#[derive(Debug, Default)]
pub struct Rotation {
    failures: Vec<String>,
    failed: Vec<String>,
}

impl Rotation {
    /// A run with nothing failed yet.
    pub fn new() -> Rotation {
        Rotation::default()
    }

    /// Runs `run(round, server)` for every server, `rounds` times in
    /// rotation; `label` names the scenario in failure messages. `run`
    /// prints its own round line.
    pub fn rounds<T>(
        &mut self,
        label: &str,
        rounds: usize,
        servers: &[ServerSpec],
        mut run: impl FnMut(usize, &ServerSpec) -> Result<T, String>,
    ) -> Samples<T> {
        let mut samples: Samples<T> = HashMap::new();
        let n = servers.len();
        for round in 0..rounds {
            for i in 0..n {
                let server = &servers[(i + round) % n];
                let slot = samples.entry(server.name.clone()).or_default();
                if self.failed.contains(&server.name) {
                    slot.push(None);
                    continue;
                }
                match run(round, server) {
                    Ok(sample) => slot.push(Some(sample)),
                    Err(e) => {
                        let msg = format!("{label} {} round {}: {e}", server.name, round + 1);
                        println!("FAILED {msg}");
                        self.failures.push(msg);
                        self.failed.push(server.name.clone());
                        slot.push(None);
                    }
                }
            }
        }
        samples
    }

    /// The exit status: 0, or 1 after listing every failure on stderr.
    pub fn exit_status(&self, program: &str) -> i32 {
        if self.failures.is_empty() {
            return 0;
        }
        eprintln!("\n{program}: {} run(s) failed:", self.failures.len());
        for f in &self.failures {
            eprintln!("  {f}");
        }
        1
    }
}
