//! Feeds arbitrary input to the PDU decoder: as text (so bad hex, odd lengths and stray
//! characters are exercised) and as raw octets turned into hex (so the TPDU parser sees every
//! octet pattern), each with and without the SMSC field. The decoder must return an error, never
//! panic; a successful decode must also render as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smshub::pdu;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for with_smsc in [true, false] {
            let _ = pdu::decode_json(text, with_smsc);
        }
    }
    let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
    for with_smsc in [true, false] {
        if let Ok(decoded) = pdu::decode(&hex, with_smsc) {
            let _ = pdu::to_json(&decoded);
        }
    }
});
