//! The README's first command: `smshub demo` runs the whole story with no hardware and exits 0.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn the_demo_shows_messages_flowing_and_exits_cleanly() {
    let mut child = smshub_command()
        .args(["demo", "--send-latency-ms", "50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(240), "the demo did not finish within 240 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("external_sms 1 marked successful"), "{text}");
    assert!(text.contains("(part 3/3, ucs2)"), "{text}");
    assert!(text.contains("(signature valid)"), "{text}");
    assert!(text.contains("Thank you! We will call you to book a time."), "{text}");
    assert!(text.contains("\"Hi Anna Virtanen, Mirri is due for a check-up. Welcome! Demo Vet\""), "{text}");
    // The new surfaces are shown: the web UI with a user to sign in as, and a token for the API.
    assert!(
        text.contains("web UI (admin listener): http://127.0.0.1:") && text.contains("sign in as demo / "),
        "{text}"
    );
    assert!(text.contains("Authorization: Bearer smshub_"), "{text}");
    assert!(!text.contains("keeps running"), "without a terminal the demo ends: {text}");
}
