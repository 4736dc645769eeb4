//! Crash safety: the daemon is killed with SIGKILL again and again while it works through a
//! queue of Provet messages on a slow simulated modem, and restarted each time. At the end every
//! message is marked exactly once in Provet, no part the simulator received was sent twice, and
//! every message caught in the unknown window is reported failed with the reason.

mod common;
use common::*;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use smshub::testbed::fake_provet::{FakeOptions, FakeProvet, Mark};

const MESSAGES: usize = 60;
const MIN_KILLS: usize = 8;

#[test]
fn sigkill_at_many_points_loses_nothing_and_sends_nothing_twice() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeProvet::start(FakeOptions::default())).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..MESSAGES {
        let to = format!("+3584012{:05}", i);
        // Every fifth message is long (three GSM-7 parts), so kills also land between parts.
        let text = if i % 5 == 0 {
            format!("Message {i}: ") + &"multipart reminder text ".repeat(18)
        } else {
            format!("Message {i}: your pet's appointment is tomorrow")
        };
        let id = fake.add_sms(&to, &text);
        expected.insert(id, (to, text));
    }
    let dir = TestDir::new();
    let sim = Sim::start(dir.path(), &["--send-latency-ms", "300"]);
    let cfg = dir.config(&format!(
        "[[provet]]\nname = \"clinic\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         poll_interval_s = 1\nretry_initial_s = 1\nretry_max_s = 2\nrequest_timeout_s = 3\nallow_insecure_http = true\n\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n[outbound]\nretry_initial_s = 1\nretry_max_s = 2\n",
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
        sim.link.display(),
    ));

    let started = Instant::now();
    let mut kills = 0;
    let mut daemon = Daemon::start(&cfg);
    // Kill at uneven moments (1.0–2.0 s apart) while work remains.
    while kills < MIN_KILLS + 4 && fake.pending_sms().len() > 5 {
        std::thread::sleep(Duration::from_millis(1000 + fastrand::u64(0..1000)));
        daemon.signal(nix::sys::signal::Signal::SIGKILL);
        assert!(daemon.wait_exit(Duration::from_secs(10)).is_some(), "the daemon did not die");
        kills += 1;
        daemon = Daemon::start(&cfg);
    }
    let kill_phase = started.elapsed();
    let all_marked = wait_for(Duration::from_secs(120), || {
        let marks = fake.marks();
        expected.keys().all(|id| marks.iter().any(|(m, _)| m == id)).then_some(())
    });
    let marks = fake.marks();
    assert!(
        all_marked.is_some(),
        "not every message was marked: {} of {MESSAGES}; pending in Provet {:?}\n{}",
        marks.len(),
        fake.pending_sms(),
        daemon.log()
    );
    // A little longer: a late duplicate mark would show up here.
    std::thread::sleep(Duration::from_secs(3));
    let marks = fake.marks();

    // Every message marked exactly once.
    for id in expected.keys() {
        let n = marks.iter().filter(|(m, _)| m == id).count();
        assert_eq!(n, 1, "message {id} marked {n} times: {marks:?}");
    }
    assert_eq!(marks.len(), MESSAGES, "{marks:?}");

    // No part the simulator received was sent twice.
    let sent = sim.sent();
    let mut seen = HashSet::new();
    for p in &sent {
        let key = (p["to"].to_string(), p["text"].to_string(), p["concat"]["seq"].to_string());
        assert!(seen.insert(key.clone()), "part sent twice: {key:?}");
    }

    // Successful messages arrived whole; failed ones were caught in the unknown window.
    let mut ok = 0;
    let mut unknown = 0;
    for (id, mark) in &marks {
        let (to, text) = &expected[id];
        match mark {
            Mark::Successful => {
                ok += 1;
                let joined: String = sent
                    .iter()
                    .filter(|p| &p["to"] == to)
                    .map(|p| p["text"].as_str().unwrap_or("").to_string())
                    .collect();
                assert_eq!(&joined, text, "message {id} was marked successful but did not arrive whole");
            }
            Mark::Failed { reason, .. } => {
                unknown += 1;
                let reason = reason.as_deref().unwrap_or("");
                assert!(
                    reason.contains("may or may not have sent it"),
                    "message {id} failed for another reason: {reason}"
                );
            }
            other => panic!("unexpected mark {other:?} for {id}"),
        }
    }
    eprintln!(
        "crash test: messages={MESSAGES} kills={kills} sent={ok} failed-unknown={unknown} parts-received-by-sim={} kill-phase={:.1}s runtime={:.1}s",
        sent.len(),
        kill_phase.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= MIN_KILLS, "only {kills} kills happened: the run was too quick to prove anything");
}
