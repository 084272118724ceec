//! Measuring a process: peak memory, CPU time, a GPU's memory use, and timed runs.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use sumi_engine::profile::{self, OpTime};
use sumi_engine::Result;

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Watches a GPU's free memory from a thread of its own while a benchmark runs.
pub(crate) struct GpuMemoryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl GpuMemoryWatch {
    /// Starts watching `device`; `None` on the CPU or where free memory is unknown.
    pub(crate) fn start(device: &Device) -> Option<Self> {
        use std::sync::atomic::Ordering;
        if device.is_cpu() {
            return None;
        }
        let before = sumi_engine::device::free_memory(device)?;
        let (device, stop) = (device.clone(), Arc::new(AtomicBool::new(false)));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut lowest = before;
            while !stopped.load(Ordering::Relaxed) {
                if let Some(free) = sumi_engine::device::free_memory(&device) {
                    lowest = lowest.min(free);
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            before - lowest
        });
        Some(Self { stop, thread })
    }

    /// Stops watching; the most memory taken at once, in bytes.
    pub(crate) fn finish(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().map(|b| b as u64)
    }
}

/// Compute threads candle uses on the CPU.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// CPU time of this process so far (Linux `/proc/self/stat`, in clock ticks of 1/100 s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Wall and CPU seconds of each run of `f`, and its operations' times per run when profiling.
pub(crate) type Runs = (Vec<f64>, Vec<Option<f64>>, Vec<OpTime>);

/// Times `f` `repeats` times; on a GPU each run ends when the device has finished its queued work.
pub(crate) fn time_runs(
    device: &Device,
    repeats: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Runs> {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    profile::take(1);
    for _ in 0..repeats.max(1) {
        device.synchronize()?;
        let c = cpu_seconds();
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        wall.push(t.elapsed().as_secs_f64());
        cpu.push(c.zip(cpu_seconds()).map(|(a, b)| b - a));
    }
    let profile = profile::take(wall.len());
    Ok((wall, cpu, profile))
}
