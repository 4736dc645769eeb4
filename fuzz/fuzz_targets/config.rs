//! Feeds arbitrary text to the config loader (TOML, then the meaning checks: ranges, URLs,
//! numbers, names). It must return a `ConfigError` naming the file, never panic; what it accepts
//! must keep the ranges the loader promises.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use smshub::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `*_file` secrets would read files: keep the fuzzer off the disk.
    if text.contains("_file") || text.contains("_credential") {
        return;
    }
    match Config::parse(Path::new("fuzz.toml"), text) {
        Ok(config) => {
            for m in &config.modems {
                assert!(m.send_timeout.as_secs() >= 1 && m.send_timeout.as_secs() <= 3600, "{m:?}");
            }
            for p in &config.provet {
                assert!(p.retry_max >= p.retry_initial, "{p:?}");
                assert!(p.request_timeout.as_secs() <= 600);
            }
            assert!(config.replies.max_parts >= 1 && config.replies.max_parts <= 10);
            assert!(config.store.keep_days >= 1);
            let _ = config.masked_json();
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.toml"), "{shown}");
        }
    }
});
