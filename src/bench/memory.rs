//! Measure 5: the memory of this process, which holds the hub (and the generated data), from
//! `/proc/self/status`.

/// Resident memory figures of this process, in KiB; `None` where `/proc` does not say (not Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// `VmRSS`: resident now.
    pub rss_kib: Option<u64>,
    /// `VmHWM`: the peak resident size since start (or since [`reset_peak`]).
    pub peak_kib: Option<u64>,
    /// `RssFile`: of `VmRSS`, pages of files mapped (the program's own, and an SQLite file the
    /// store's readers map), which are the operating system's file cache.
    pub file_kib: Option<u64>,
}

/// Reads `VmRSS` and `VmHWM` of this process.
pub fn read() -> ProcessMemory {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return ProcessMemory::default();
    };
    parse(&status)
}

fn parse(status: &str) -> ProcessMemory {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
    };
    ProcessMemory {
        rss_kib: field("VmRSS"),
        peak_kib: field("VmHWM"),
        file_kib: field("RssFile"),
    }
}

/// Resets the peak (`VmHWM`) to the current resident size, so that a later peak is that of what
/// ran since; Linux 4.0 and later (`/proc/self/clear_refs`, value 5). Returns whether it did.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernel_s_figures() {
        let status = "Name:\tquotahub\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n\
                      RssAnon:\t   71680 kB\nRssFile:\t   30720 kB\nThreads:\t4\n";
        assert_eq!(
            parse(status),
            ProcessMemory {
                rss_kib: Some(102_400),
                peak_kib: Some(204_800),
                file_kib: Some(30_720),
            }
        );
        assert_eq!(parse(""), ProcessMemory::default());
    }
}
