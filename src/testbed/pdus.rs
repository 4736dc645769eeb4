//! Hand-built PDUs for tests, each commented octet by octet from the specification.

/// An MMS notification as a network delivers it, built by hand from TS 23.040 (SMS-DELIVER,
/// UDH with the 16-bit application port IE, 9.2.3.24.4), WAP-230 (WSP Push PDU) and
/// OMA-MMS-ENC (M-Notification.ind). Used by the unit tests of `inbound::receive` and by
/// tests/inbound_e2e.rs, which injects it into the simulator.
pub fn mms_notification_pdu() -> String {
    let wsp_and_mms: &[u8] = &[
        0x01, // WSP: transaction id
        0x06, // WSP: PDU type Push
        0x01, // WSP: HeadersLen (uintvar) = 1: just the content type
        0xBE, // WSP: Content-Type application/vnd.wap.mms-message (0x3E | 0x80)
        0x8C, 0x82, // MMS: X-Mms-Message-Type = m-notification-ind
        0x98, b'T', b'1', 0x00, // MMS: X-Mms-Transaction-ID "T1"
        0x8D, 0x92, // MMS: X-Mms-MMS-Version 1.2
        0x8A, 0x80, // MMS: X-Mms-Message-Class personal
        0x8E, 0x02, 0x0B, 0xB8, // MMS: X-Mms-Message-Size, long integer of 2 octets: 3000
        0x88, 0x05, 0x81, 0x03, 0x01, 0x51, 0x80, // MMS: X-Mms-Expiry, relative, 86400 s
        0x83, b'h', b't', b't', b'p', b':', b'/', b'/', b'm', b'm', b's', b'/', b'1', 0x00, // Content-Location
    ];
    let udh: &[u8] = &[
        0x06, // UDHL: 6 octets of header follow
        0x05, // IEI: application port addressing, 16-bit ports
        0x04, // IE length
        0x0B, 0x84, // destination port 2948 (WAP push)
        0x23, 0xF0, // originator port 9200 (WAP connectionless session)
    ];
    let mut pdu: Vec<u8> = vec![
        0x07, 0x91, 0x53, 0x48, 0x05, 0x20, 0x02, 0x00, // SMSC: 7 octets, international, +358405202000
        0x44, // TP-MTI 00 deliver, TP-MMS (no more messages), TP-UDHI (a header is present)
        0x0C, 0x91, 0x53, 0x48, 0x10, 0x32, 0x54, 0x76, // TP-OA: 12 digits, international, +358401234567
        0x00, // TP-PID
        0x04, // TP-DCS: 8-bit data, no class
        0x52, 0x21, 0x40, 0x21, 0x43, 0x00, 0x00, // TP-SCTS 2025-12-04 12:34:00 +00
    ];
    pdu.push(u8::try_from(udh.len() + wsp_and_mms.len()).unwrap()); // TP-UDL: octets, 8-bit data
    pdu.extend_from_slice(udh);
    pdu.extend_from_slice(wsp_and_mms);
    pdu.iter().map(|b| format!("{b:02X}")).collect()
}
