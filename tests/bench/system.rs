//! What the bench reads from and asks of the kernel: the file-descriptor limit that many
//! WebSockets need, and a process's resident memory.

use std::fs;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises this process's `RLIMIT_NOFILE` to at least `wanted` where it can (the hard limit too
/// when running as root), so that it and the children it starts afterwards (which inherit it)
/// may open that many files. Returns the soft limit now in force, which is below `wanted` when
/// the hard limit could not be raised.
pub fn raise_nofile(wanted: u64) -> u64 {
    let now = getrlimit(Resource::Nofile);
    let current = now.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let maximum = match now.maximum {
        Some(hard) if hard < wanted => Some(wanted),
        other => other,
    };
    let raised = Rlimit {
        current: Some(wanted),
        maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        // Not allowed to raise the hard limit: go as far as it allows.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
///
/// # Errors
///
/// When the process is gone or the file has no such line.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).map_err(|err| format!("read {path}: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| format!("no VmRSS line in {path}"))
}
