//! Where a run spends its time by kind of operation (`SUMI_PROFILE=1`; `sumi bench` reports it
//! per component): convolution, group norm, attention, linear layers and GEGLU. Each call is
//! timed between two device synchronisations, so on a GPU every operation drains the queue (the
//! run is slower, but each figure is that operation's own). The rest of a component's time
//! (elementwise ops, layer norm, resampling, launch gaps) is what the figures leave.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{Device, Result};
use serde::Serialize;

/// Set to `1` to time operations.
pub const PROFILE_ENV: &str = "SUMI_PROFILE";

/// Time in one kind of operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpTime {
    /// Kind of operation.
    pub op: String,
    /// Calls.
    pub calls: u64,
    /// Seconds in those calls.
    pub seconds: f64,
    /// CPU seconds the process spent in those calls, all threads together (so `cpu_seconds /
    /// seconds` is how many cores were busy on average); 0 where the platform does not say.
    pub cpu_seconds: f64,
}

/// Per kind: wall time, process CPU time, calls.
type Totals = BTreeMap<&'static str, (Duration, Duration, u64)>;

static TOTALS: Mutex<Totals> = Mutex::new(BTreeMap::new());

/// Whether `SUMI_PROFILE=1`.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(PROFILE_ENV).as_deref() == Ok("1"))
}

/// Runs `f`, adding its time to `op`'s total when profiling.
pub fn time<T>(op: &'static str, device: &Device, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !enabled() {
        return f();
    }
    device.synchronize()?;
    let (start, cpu) = (Instant::now(), process_cpu());
    let out = f()?;
    device.synchronize()?;
    record(op, start.elapsed(), process_cpu().saturating_sub(cpu));
    Ok(out)
}

/// CPU time the whole process has used so far.
fn process_cpu() -> Duration {
    #[cfg(unix)]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the one timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } == 0 {
            return Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

fn record(op: &'static str, spent: Duration, cpu: Duration) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let total = totals.entry(op).or_default();
    total.0 += spent;
    total.1 += cpu;
    total.2 += 1;
}

/// The totals since the last call, divided by `runs`, most time first; starts new totals.
pub fn take(runs: usize) -> Vec<OpTime> {
    let totals = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    let runs = runs.max(1);
    let mut out: Vec<OpTime> = totals
        .into_iter()
        .map(|(op, (spent, cpu, calls))| OpTime {
            op: op.to_string(),
            calls: calls / runs as u64,
            seconds: spent.as_secs_f64() / runs as f64,
            cpu_seconds: cpu.as_secs_f64() / runs as f64,
        })
        .collect();
    out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_per_run_and_start_again_after_take() {
        take(1);
        let ms = Duration::from_millis;
        record("convolution", ms(30), ms(50));
        record("convolution", ms(10), ms(20));
        record("attention", ms(60), ms(100));
        let got = take(2);
        assert_eq!(got[0].op, "attention");
        assert!((got[0].seconds - 0.03).abs() < 1e-9);
        assert!((got[0].cpu_seconds - 0.05).abs() < 1e-9);
        assert_eq!((got[1].op.as_str(), got[1].calls), ("convolution", 1));
        assert!((got[1].seconds - 0.02).abs() < 1e-9);
        assert!(take(1).is_empty());
    }
}
