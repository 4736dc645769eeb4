//! Fuzz the AT line digester: arbitrary modem bytes, fed in arbitrary chunks, with or without a
//! command in flight. It must never panic, and the chunking must never change what it finds.
//!
//! Run: `cargo fuzz run at_lines -- -max_total_time=60` (from the crate root; needs cargo-fuzz).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smshub::modem::at::{Digester, fields};

/// Commands whose responses the digester frames differently (prefix match, PDU lines, prompt).
const COMMANDS: &[(&str, bool)] = &[
    ("AT", false),
    ("AT+CMGL=4", false),
    ("AT+CMGR=1", false),
    ("AT+CREG?", false),
    ("AT+CMGS=23", true),
    // An acknowledgement joined to a send (the driver's +CNMA riding on the next +CMGS line).
    ("AT+CNMA;+CMGS=23", true),
];

fn run(command: Option<(&str, bool)>, input: &[u8], chunk: usize) -> Vec<smshub::modem::at::Event> {
    let mut d = Digester::new();
    if let Some((c, prompt)) = command {
        d.begin(c, prompt);
    }
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        d.feed(part, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else { return };
    let chunk = usize::from(control & 0x0f) + 1;
    let command = match usize::from(control >> 4) {
        i if i < COMMANDS.len() => COMMANDS.get(i).copied(),
        _ => None,
    };
    let whole = run(command, input, input.len());
    let chunked = run(command, input, chunk);
    assert_eq!(whole, chunked, "chunking changed the events");
    for line in String::from_utf8_lossy(input).split(['\r', '\n']) {
        let _ = fields(line);
    }
});
