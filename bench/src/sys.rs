//! Linux process accounting and limits: CPU time of this process and of the
//! server child, resident memory, CPU affinity and the open-file limit.

use std::io;

/// CPU time (user + system) consumed so far by this process, all threads, in
/// microseconds, from `getrusage(RUSAGE_SELF)`.
pub(crate) fn self_cpu_us() -> u64 {
    // SAFETY: `rusage` is plain old data; an all-zero value is valid and
    // getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live `rusage`; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv_us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    tv_us(ru.ru_utime) + tv_us(ru.ru_stime)
}

/// CPU time (utime + stime, all threads) consumed so far by process `pid`, in
/// microseconds, from `/proc/<pid>/stat`. Resolution is one clock tick
/// (usually 10 ms).
///
/// # Errors
/// When the file cannot be read or parsed (e.g. the process is gone).
pub(crate) fn proc_cpu_us(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces:
    // parse from the last ')'. Field 3 (state) is then index 0, so utime
    // (field 14) is index 11 and stime (field 15) is index 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parse = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat field"))
    };
    let ticks = parse(11)? + parse(12)?;
    Ok(ticks * 1_000_000 / clock_ticks_per_sec())
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc/<pid>/stat` times.
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
///
/// # Errors
/// When the file cannot be read or has no `VmRSS` line.
pub(crate) fn proc_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"))
}

/// A saved CPU affinity mask of the calling thread, restored on drop.
pub(crate) struct AffinityGuard {
    /// The mask in force before pinning.
    saved: libc::cpu_set_t,
}

/// Pins the calling thread to `cpu`. Threads and processes it creates
/// afterwards (the client runtime, the server child) inherit the mask. The
/// previous mask comes back when the returned guard is dropped.
///
/// # Errors
/// When `sched_getaffinity` or `sched_setaffinity` fails (e.g. no such CPU).
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<AffinityGuard> {
    // SAFETY: cpu_set_t is a plain bit array; zeroed is the empty set.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `saved`.
    if unsafe { libc::sched_getaffinity(0, size, &mut saved) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; CPU_SET writes one bit inside the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    if unsafe { libc::sched_setaffinity(0, size, &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(AffinityGuard { saved })
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: restores a mask previously returned by sched_getaffinity.
        unsafe { libc::sched_setaffinity(0, size, &self.saved) };
    }
}

/// Raises the soft open-file limit so that at least `want` descriptors can
/// be open, up to the hard limit. Child processes inherit the new limit.
/// Returns the soft limit now in force.
///
/// # Errors
/// When `getrlimit` or `setrlimit` fails.
pub(crate) fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: valid pointer to a live rlimit; soft <= hard.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}
