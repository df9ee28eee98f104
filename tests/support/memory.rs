//! Memory of a process tree as `/proc` reports it: PSS per process (from `smaps_rollup`),
//! the part of the root's that maps its own executable (from `smaps`), and the tree's pids.
//! PSS splits each shared page among the processes that map it, so a tree's PSS sums to
//! what it costs the machine, and two stacks are compared fairly only when each is measured
//! alone (a library both map would otherwise be split between them).

use std::collections::BTreeMap;
use std::time::Duration;

use super::wait_for;

/// One process of a measured tree.
#[derive(Debug, Clone)]
pub struct ProcessPss {
    pub pid: u32,
    /// Its command line, shortened.
    pub what: String,
    /// PSS in KiB.
    pub pss: u64,
    /// Private dirty pages in KiB: what it wrote that no other process shares.
    pub private_dirty: u64,
}

/// A process tree's PSS, root first.
#[derive(Debug, Clone)]
pub struct TreePss {
    pub processes: Vec<ProcessPss>,
    /// KiB of the root's PSS that map its executable file.
    pub root_exe: u64,
}

impl TreePss {
    /// `pid` and every process below it.
    pub fn of(pid: u32) -> TreePss {
        let processes = tree_pids(pid)
            .into_iter()
            .filter_map(|p| {
                let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
                let what = std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
                    .chars()
                    .take(70)
                    .collect();
                Some(ProcessPss {
                    pid: p,
                    what,
                    pss: field(&rollup, "Pss:"),
                    private_dirty: field(&rollup, "Private_Dirty:"),
                })
            })
            .collect();
        TreePss {
            processes,
            root_exe: exe_pss(pid),
        }
    }

    /// The whole tree's PSS in KiB.
    pub fn total(&self) -> u64 {
        self.processes.iter().map(|p| p.pss).sum()
    }

    /// One line per process, for the test's output.
    pub fn table(&self) -> String {
        self.processes
            .iter()
            .map(|p| {
                format!(
                    "  {:>7} {:>6.1} MiB PSS ({:>5.1} private dirty)  {}\n",
                    p.pid,
                    p.pss as f64 / 1024.0,
                    p.private_dirty as f64 / 1024.0,
                    p.what
                )
            })
            .collect()
    }
}

/// The value of a `Name:   123 kB` line.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// KiB of `pid`'s PSS in the mappings of its own executable.
fn exe_pss(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let exe = exe.to_string_lossy();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut total, mut in_exe) = (0, false);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            in_exe = line.ends_with(&*exe);
        } else if in_exe {
            total += field(line, "Pss:");
        }
    }
    total
}

/// `pid` and its descendants.
pub fn tree_pids(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut pending = vec![pid];
    while let Some(p) = pending.pop() {
        all.push(p);
        pending.extend(children(p));
    }
    all
}

/// The pids whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|pp| pp.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Waits until none of `pids` exists any more (they were killed: this reaps nothing).
pub fn wait_gone(pids: &[u32], timeout: Duration) {
    wait_for("the measured processes to end", timeout, || {
        pids.iter()
            .all(|p| {
                // A zombie has no memory left: it counts as gone.
                std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
            })
            .then_some(())
    });
}

/// `requests` GETs of `url` from `clients` threads at once, each with its own keep-alive
/// client; returns how many answers each `"pid": N` in the body named, so a caller can check
/// that every worker served (and so paid for its first requests) before it is measured.
pub fn spread_requests(url: &str, clients: usize, requests: usize) -> BTreeMap<u32, usize> {
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let url = url.to_string();
            let share = requests / clients + usize::from(i < requests % clients);
            std::thread::spawn(move || {
                let agent = super::client();
                let mut pids = Vec::with_capacity(share);
                for _ in 0..share {
                    let (status, body) = super::get(&agent, &url).expect("GET");
                    assert_eq!(status, 200, "{body}");
                    let pid = body
                        .split("\"pid\":")
                        .nth(1)
                        .and_then(|rest| {
                            rest.trim_start()
                                .split(|c: char| !c.is_ascii_digit())
                                .next()?
                                .parse()
                                .ok()
                        })
                        .unwrap_or_else(|| panic!("no pid in {body:?}"));
                    pids.push(pid);
                }
                pids
            })
        })
        .collect();
    let mut served = BTreeMap::new();
    for t in threads {
        for pid in t.join().expect("client thread") {
            *served.entry(pid).or_insert(0) += 1;
        }
    }
    served
}
