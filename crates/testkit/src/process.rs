//! The user we run as, and measured child processes.

use std::process::Command;
use std::time::{Duration, Instant};

/// Whether we run as root (as in CI): servers then drop to their own users.
pub fn is_root() -> bool {
    // SAFETY-free check: `id -u` keeps us off libc.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a child to completion; returns (success, peak RSS in KB, wall time). The peak is the
/// child's own VmHWM sampled from /proc: wait4's ru_maxrss would also count the parent's
/// memory at spawn time (the child shares it until exec).
pub fn run_measured(cmd: &mut Command) -> (bool, u64, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(st) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = st
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.success(), peak, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
