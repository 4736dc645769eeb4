//! The daemon's memory at rest: what start-up used is given back.
//!
//! Start-up runs a lot of code once (argument and config parsing, migrations, binding the listeners,
//! the first pass of every loop) and the kernel maps code in 64 KiB windows around each first
//! call (fault-around), so right after start-up most of the binary's code is resident although the
//! daemon at rest runs a small part of it (measured: 5.0 of 5.3 MiB of code resident, of which at
//! most 1.8 MiB was touched in the next two minutes). `smshub bench idle` measures the result.
//!
//! [`give_back`] (run by [`run`] 90 s after start-up and then hourly) does two things:
//! - `malloc_trim(0)`: free heap pages go back to the kernel (glibc keeps them otherwise).
//! - every *clean* read-only file mapping (code and constants of the binary and its libraries:
//!   `r-xp`/`r--p`, no private or dirty page in it) is dropped from this process's page tables
//!   with `madvise(MADV_DONTNEED)`. Such a mapping holds nothing but the file's bytes: the next
//!   access maps the same page back from the page cache (a minor fault, no disk read while the
//!   page is cached), so correctness cannot change; what the daemon does not use at rest stays
//!   unmapped, and the kernel can reclaim those page-cache pages before any mapped one. A mapping
//!   with a private copy-on-write page (relocated `.data.rel.ro`, a debugger's breakpoint) is
//!   never touched: dropping it would bring back the file's bytes in place of the written ones.
//!
//! [`limit_malloc_arenas`] keeps glibc from giving each thread its own heap arena (each arena keeps
//! its own free pages): two arenas serve the daemon's few threads.
//!
//! Linux/glibc only; elsewhere these are no-ops.

use std::time::Duration;

/// When the first give-back runs: after start-up, the first pass of every loop (their sweeps are
/// a minute apart at most) and the first retention pass (a minute in, then daily).
pub const FIRST_AFTER: Duration = Duration::from_secs(90);
/// How often it runs again: code and heap used by a busy spell (a burst of messages, someone in
/// the web UI) are given back within the hour.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Heap arenas for the daemon's threads (glibc's default is 8 per core).
const MALLOC_ARENAS: i32 = 2;

/// What one give-back did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GivenBack {
    /// Clean read-only file mappings dropped from the page tables.
    pub mappings: usize,
    /// Their resident size before, in KiB.
    pub resident_kib: u64,
    /// Read-only file mappings left alone because they hold private (written) pages.
    pub kept_dirty: usize,
}

/// Caps glibc's heap arenas. Call before the runtime starts its threads.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Gives back free heap pages and unmaps clean read-only file mappings (see the module doc).
pub fn give_back() -> std::io::Result<GivenBack> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut done = GivenBack::default();
    for mapping in parse_smaps(&smaps) {
        if !mapping.is_read_only_file() {
            continue;
        }
        if !mapping.is_clean() {
            done.kept_dirty += 1;
            continue;
        }
        if drop_pages(mapping.start, mapping.end) {
            done.mappings += 1;
            done.resident_kib += mapping.rss_kib;
        }
    }
    Ok(done)
}

#[cfg(target_os = "linux")]
fn drop_pages(start: usize, end: usize) -> bool {
    // SAFETY: [start, end) is a whole mapping of this process read from /proc/self/smaps, read-only
    // and private, with no anonymous or dirty page: MADV_DONTNEED only removes page-table entries
    // whose content the next access maps again, unchanged, from the file.
    unsafe { nix::libc::madvise(start as *mut nix::libc::c_void, end - start, nix::libc::MADV_DONTNEED) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn drop_pages(_start: usize, _end: usize) -> bool {
    false
}

/// Runs [`give_back`] after [`FIRST_AFTER`] and then every [`EVERY`] until `stop`.
pub async fn run(mut stop: crate::shutdown::ShutdownSignal) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match tokio::task::spawn_blocking(give_back).await {
            Ok(Ok(done)) => tracing::debug!(
                mappings = done.mappings,
                resident_kib = done.resident_kib,
                kept_dirty = done.kept_dirty,
                "gave back start-up memory"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read /proc/self/smaps; memory not given back"),
            Err(e) => tracing::debug!(error = %e, "the memory give-back task failed"),
        }
        wait = EVERY;
    }
}

/// One mapping of /proc/self/smaps, with the fields the decision needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    inode: u64,
    rss_kib: u64,
    /// Anonymous + Private_Dirty + Shared_Dirty, in KiB.
    written_kib: u64,
}

impl Mapping {
    /// Code or constants of a file, private, never writable (`r-xp`, `r--p`).
    fn is_read_only_file(&self) -> bool {
        self.inode != 0 && (self.perms == "r-xp" || self.perms == "r--p") && self.end > self.start
    }

    fn is_clean(&self) -> bool {
        self.written_kib == 0
    }
}

/// Parses /proc/self/smaps: a header line per mapping (`start-end perms offset dev inode path`)
/// followed by `Key: value kB` lines. Lines it does not know are skipped.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = fields.next().unwrap_or("").to_string();
            let inode = fields.nth(2).and_then(|v| v.parse().ok()).unwrap_or(0);
            out.push(Mapping { start, end, perms, inode, ..Mapping::default() });
            continue;
        }
        let Some(current) = out.last_mut() else { continue };
        let kib = || fields.clone().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match first {
            "Rss:" => current.rss_kib = kib(),
            "Anonymous:" | "Private_Dirty:" | "Shared_Dirty:" => {
                current.written_kib = current.written_kib.saturating_add(kib());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55e8901c5000-55e8901f8000 r--p 00626000 fe:01 1234 /usr/bin/smshub
Size:                204 kB
Rss:                 204 kB
Private_Dirty:       204 kB
Anonymous:           204 kB
VmFlags: rd mr mw me ac sd
55e8901f8000-55e8906f0000 r-xp 00659000 fe:01 1234 /usr/bin/smshub
Size:               5088 kB
Rss:                4960 kB
Shared_Dirty:          0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7ffda8559000-7ffda857a000 rw-p 00000000 00:00 0                          [stack]
Rss:                  80 kB
Anonymous:            80 kB
7ffda85fa000-7ffda85fc000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
";

    #[test]
    fn smaps_is_read_into_mappings_with_their_written_pages() {
        let maps = parse_smaps(SAMPLE);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].perms, "r--p");
        assert_eq!((maps[0].inode, maps[0].written_kib), (1234, 408));
        assert_eq!((maps[1].start, maps[1].end), (0x55e8901f8000, 0x55e8906f0000));
        assert_eq!((maps[1].rss_kib, maps[1].written_kib), (4960, 0));
        let chosen: Vec<bool> = maps.iter().map(|m| m.is_read_only_file() && m.is_clean()).collect();
        // Relocated constants (written), the stack and the vdso (no file) are never dropped.
        assert_eq!(chosen, [false, true, false, false]);
    }

    #[test]
    fn hostile_or_truncated_smaps_lines_are_skipped() {
        let text = "zz-yy r-xp 0 0 0 /x\nRss: lots kB\n10-5 r-xp 0 fe:01 9 /x\nRss: 4 kB\n\n-\nAnonymous:\n";
        let maps = parse_smaps(text);
        // The second header parses (start 0x10, end 0x5) but an inverted range is never chosen.
        assert_eq!(maps.len(), 1);
        assert!(!maps[0].is_read_only_file());
    }

    /// A page-aligned private file mapping of `len` bytes of `fill`.
    fn map_file(dir: &std::path::Path, name: &str, fill: u8, len: usize) -> (*mut u8, std::fs::File) {
        use std::os::fd::AsRawFd;
        let path = dir.join(name);
        std::fs::write(&path, vec![fill; len]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // Written back first: smaps counts a page the page cache still has to write as dirty,
        // and dirty mappings are left alone (a binary on disk is long written back).
        file.sync_all().unwrap();
        // SAFETY: a fresh private mapping of a file we own; unmapped at the end of the test.
        let ptr = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                len,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, nix::libc::MAP_FAILED);
        (ptr.cast(), file)
    }

    fn mapping_at(ptr: *mut u8) -> Mapping {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        parse_smaps(&smaps).into_iter().find(|m| m.start == ptr as usize).expect("the mapping is listed")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_written_read_only_mapping_keeps_its_pages_and_a_clean_one_is_dropped_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let len = 64 * 1024;
        let (written, _f1) = map_file(dir.path(), "written", b'a', len);
        let (clean, _f2) = map_file(dir.path(), "clean", b'c', len);
        // SAFETY: both mappings are `len` bytes long and ours alone.
        unsafe {
            // A copy-on-write page, then read-only: what relocated constants look like.
            *written.add(100) = b'X';
            assert_eq!(nix::libc::mprotect(written.cast(), len, nix::libc::PROT_READ), 0);
            // Every page of the clean one read, then read-only.
            for off in (0..len).step_by(4096) {
                assert_eq!(std::ptr::read_volatile(clean.add(off)), b'c');
            }
            assert_eq!(nix::libc::mprotect(clean.cast(), len, nix::libc::PROT_READ), 0);
        }
        assert!(mapping_at(clean).rss_kib > 0);
        assert!(mapping_at(written).written_kib > 0);

        let done = give_back().unwrap();
        assert!(done.mappings >= 1, "{done:?}");
        assert!(done.kept_dirty >= 1, "{done:?}");
        assert_eq!(mapping_at(clean).rss_kib, 0, "the clean mapping is no longer resident");
        // SAFETY: as above.
        unsafe {
            assert_eq!(std::ptr::read_volatile(written.add(100)), b'X', "the written page was kept");
            assert_eq!(std::ptr::read_volatile(written.add(101)), b'a');
            assert_eq!(std::ptr::read_volatile(clean.add(len - 1)), b'c', "the clean page reads back from the file");
            nix::libc::munmap(written.cast(), len);
            nix::libc::munmap(clean.cast(), len);
        }
    }
}
