//! Codec tests across modules: real PDUs from specs, published examples and phones/modems in
//! the field (each checked by hand against TS 23.040, see the comments), malformed input, and
//! property tests of encode -> decode.

use proptest::prelude::*;

use super::*;

fn deliver(hex: &str, with_smsc: bool) -> (Option<String>, Deliver) {
    match decode(hex, with_smsc) {
        Ok(DecodedPdu {
            smsc,
            message: Message::Deliver(d),
        }) => (smsc, d),
        other => panic!("{hex}: expected a deliver, got {other:?}"),
    }
}

fn submit(hex: &str, with_smsc: bool) -> (Option<String>, Submit) {
    match decode(hex, with_smsc) {
        Ok(DecodedPdu {
            smsc,
            message: Message::Submit(s),
        }) => (smsc, s),
        other => panic!("{hex}: expected a submit, got {other:?}"),
    }
}

fn report(hex: &str, with_smsc: bool) -> (Option<String>, StatusReport) {
    match decode(hex, with_smsc) {
        Ok(DecodedPdu {
            smsc,
            message: Message::StatusReport(r),
        }) => (smsc, r),
        other => panic!("{hex}: expected a status report, got {other:?}"),
    }
}

struct DeliverCase {
    source: &'static str,
    hex: &'static str,
    smsc: Option<&'static str>,
    sender: &'static str,
    kind: AddressKind,
    timestamp: &'static str,
    encoding: Encoding,
    text: &'static str,
    concat: Option<ConcatInfo>,
}

#[test]
fn real_deliver_pdus_decode_to_what_their_senders_wrote() {
    let cases = [
        DeliverCase {
            // The classic example of the "SMS and the PDU format" tutorial: TOA C8 is TON 4
            // (subscriber number), shown as digits.
            source: "dreamfabric tutorial",
            hex: "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
            smsc: Some("+27381000015"),
            sender: "27838890001",
            kind: AddressKind::Other(0xC8),
            timestamp: "1999-03-29T15:16:59+02:00",
            encoding: Encoding::Gsm7,
            text: "hellohello",
            concat: None,
        },
        DeliverCase {
            // Zone octet 08: sign bit with zero quarters, i.e. UTC.
            source: "dreamfabric tutorial",
            hex: "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
            smsc: Some("+31624000000"),
            sender: "+31641600986",
            kind: AddressKind::International,
            timestamp: "2002-08-26T19:37:41+00:00",
            encoding: Encoding::Gsm7,
            text: "How are you?",
            concat: None,
        },
        DeliverCase {
            source: "python-gsmmodem test_pdu.py",
            hex: "06917228195339040B917228214365F700003130805120618005D4F29C2E03",
            smsc: Some("+2782913593"),
            sender: "+27821234567",
            kind: AddressKind::International,
            timestamp: "2013-03-08T15:02:16+02:00",
            encoding: Encoding::Gsm7,
            text: "Test2",
            concat: None,
        },
        DeliverCase {
            // Hong Kong, zone octet 23 = 32 quarters = +08:00.
            source: "python-gsmmodem test_pdu.py",
            hex: "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E",
            smsc: Some("+85290000000"),
            sender: "+85291234567",
            kind: AddressKind::International,
            timestamp: "2007-04-12T23:25:42+08:00",
            encoding: Encoding::Gsm7,
            text: "It is easy to read text messages via AT commands.",
            concat: None,
        },
        DeliverCase {
            // Extension table: { and } are ESC sequences, so UDL 10 for 8 characters.
            source: "python-gsmmodem test_pdu.py",
            hex: "06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910",
            smsc: Some("+2782913593"),
            sender: "+27821234567",
            kind: AddressKind::International,
            timestamp: "2013-03-26T13:35:25+02:00",
            encoding: Encoding::Gsm7,
            text: "@{tést}!",
            concat: None,
        },
        DeliverCase {
            // Short-code sender (TOA 81) and a one-part concatenation header with 1 fill bit.
            source: "python-gsmmodem test_pdu.py (South African operator)",
            hex: "0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D85E064941B19CAB060319A5C522289C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD36C36A88C87A7E565D0DB0D82C55EB0DB4B068BCD5C20",
            smsc: Some("+2781191"),
            sender: "2781188",
            kind: AddressKind::Other(0x81),
            timestamp: "2013-06-25T16:40:48+02:00",
            encoding: Encoding::Gsm7,
            text: "Hello!You have R 19.50 FREE airtime available. R 19.50 will expire on 01/07/2013. ",
            concat: Some(ConcatInfo {
                reference: 0xC3,
                total: 1,
                seq: 1,
            }),
        },
        DeliverCase {
            // Part 1 of 8 with the 8-bit reference IE; 153 septets after the 6-octet UDH.
            source: "gammu tests (sms-multipart decode)",
            hex: "07918497900000F6400B918406290000F4000002219221351140A005000363080140CCB7BCDC06A5E1F37A1B447EB3DF72D03C4D0785DB653A0B347EBBE7E531BD4CAFCB4161721A9E9E8FD3EE33A8CC4ED35D206899CD2EBBE9E579BC5E06D9D3F47019E42EC7EB6550F95C9ED3C37316C81CAE8FD3E2FA1C5496BFE7A0B49B054A87C775767A0E4AC3E7F5B60B34ADCFE16537393D9F9741E4F4D99D9ECFD36D10FC2DA7D3D3",
            smsc: Some("+48790900006"),
            sender: "+48609200004",
            kind: AddressKind::International,
            timestamp: "2020-12-29T12:53:11+01:00",
            encoding: Encoding::Gsm7,
            text: " Lorem ipsum dolor sit amet, consectetur adipiscing elit. Pellentesque vitae neque egestas, faucibus eros in, iaculis ipsum. Suspendisse dignissim portti",
            concat: Some(ConcatInfo {
                reference: 99,
                total: 8,
                seq: 1,
            }),
        },
        DeliverCase {
            // Alphanumeric sender (TOA D0) captured on a Russian network (bg111/asterisk-chan-dongle
            // issue 91). The text says 13:09:50 MSK (UTC+4 in 2012); the SMSC stamped 17:10:04 at
            // +08:00 (Krasnoyarsk): the same minute, which checks the quarter-hour zone decoding.
            source: "asterisk-chan-dongle issue 91",
            hex: "07919720990610F00410D0C8E7945A94BAA4550000218051710140235550E953C82C3641C51828EDA697E5E6F0B83C0705E7F4B23C3D5FB784E5323BED2E83623057CC1573D1404369929A1C0699A06B990C0AD6CFA0580D149BE960395D0D066A4E9720192C2603",
            smsc: Some("+79029960010"),
            sender: "HOSTER.RU",
            kind: AddressKind::Alphanumeric,
            timestamp: "2012-08-15T17:10:04+08:00",
            encoding: Encoding::Gsm7,
            text: "PROBLEM E1 interfaces Asterisk-Beeline 10.1.1.4 CRITICAL Wed Aug 15 13:09:50 MSK 2012",
            concat: None,
        },
        DeliverCase {
            // Alphanumeric sender with TOA D1 (NPI 1) from a French operator, +CMGR on a Huawei
            // dongle (wdoekes/asterisk-chan-dongle issue 9; the reporter altered the sender).
            source: "asterisk-chan-dongle issue 9",
            hex: "07913396050066F1240ED1D365D1397542890000619003815474801ED7309B5E968388EFF2BA3C07A5E7A030E82C2F87E9A0733D0F0A01",
            smsc: Some("+33695000661"),
            sender: "SKENSNPD",
            kind: AddressKind::Alphanumeric,
            timestamp: "2016-09-30T18:45:47+02:00",
            encoding: Encoding::Gsm7,
            text: "Walter Doekes is a great guy !",
            concat: None,
        },
    ];
    for c in cases {
        let (smsc, d) = deliver(c.hex, true);
        let what = format!("{} ({})", c.hex, c.source);
        assert_eq!(smsc.as_deref(), c.smsc, "{what}");
        assert_eq!(d.sender.to_string(), c.sender, "{what}");
        assert_eq!(d.sender.kind, c.kind, "{what}");
        assert_eq!(d.timestamp.to_rfc3339(), c.timestamp, "{what}");
        assert_eq!(d.encoding, c.encoding, "{what}");
        assert_eq!(d.text, c.text, "{what}");
        assert_eq!(d.concat, c.concat, "{what}");
    }
}

#[test]
fn real_submit_pdus_decode_with_validity_and_report_flag() {
    // First octet 31: SRR + relative VP; VP A9 = 169 = 3 days; MR 0x0D.
    let (smsc, s) = submit(
        "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
        true,
    );
    assert_eq!(smsc.as_deref(), Some("+31624000000"));
    assert_eq!(s.message_ref, 13);
    assert_eq!(s.recipient.to_string(), "+31628870634");
    assert_eq!(s.text, "www.diafaan.com");
    assert!(s.status_report_requested);
    assert_eq!(s.validity_minutes, Some(3 * 24 * 60));

    // UCS-2 submit (python-gsmmodem): U+3042 U+53F6 U+8449.
    let (_, s) = submit(
        "07914346466554F601000B914316565811F9000806304253F68449",
        true,
    );
    assert_eq!((s.encoding, s.text.as_str()), (Encoding::Ucs2, "あ叶葉"));
    assert_eq!(s.recipient.to_string(), "+34616585119");
    assert!(!s.status_report_requested);
    assert_eq!(s.validity_minutes, None);

    // 8-bit data (DCS 04) holding ASCII.
    let (_, s) = submit(
        "0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421",
        true,
    );
    assert_eq!(
        (s.encoding, s.text.as_str()),
        (Encoding::EightBit, "Hello world!")
    );
}

#[test]
fn real_status_reports_decode_with_and_without_smsc() {
    // +CDS from a modem in gammu's tests: MR 0x36, delivered (ST 0).
    let (smsc, r) = report(
        "07914875215652F006360B914892347527F3817003018104808170030181448000",
        true,
    );
    assert_eq!(smsc.as_deref(), Some("+84571265250"));
    assert_eq!(r.message_ref, 0x36);
    assert_eq!(r.recipient.to_string(), "+84294357723");
    assert_eq!(r.scts.to_rfc3339(), "2018-07-30T10:18:40+02:00");
    assert_eq!(r.discharge_time.to_rfc3339(), "2018-07-30T10:18:44+02:00");
    assert_eq!(r.status, 0);

    // +CDS as printed without the SMSC field (amro.blogspot.com, 2007).
    let (smsc, r) = report("06000B910221815716F2709021510121807090215101718000", false);
    assert_eq!(smsc, None);
    assert_eq!(r.message_ref, 0);
    assert_eq!(r.recipient.to_string(), "+20121875612");
    assert_eq!(r.scts.to_rfc3339(), "2007-09-12T15:10:12+02:00");
    assert_eq!(r.discharge_time.to_rfc3339(), "2007-09-12T15:10:17+02:00");

    // Empty SMSC field ("00") before the report (python-gsmmodem): MR 214.
    let (smsc, r) = report("0006D60B911326880736F4111011719551401110117195714000", true);
    assert_eq!(smsc, None);
    assert_eq!(r.message_ref, 214);
    assert_eq!(r.recipient.to_string(), "+31628870634");
    assert_eq!(r.scts.to_rfc3339(), "2011-01-11T17:59:15+01:00");
}

#[test]
fn sixteen_bit_concatenation_reference_is_decoded() {
    // Hand-built from the "Test2" deliver above: first octet 44 (UDHI), UDH 06 08 04 1234 03 02
    // (7 octets = 8 septets, no fill bits), then "Test2" packed from a septet boundary.
    let hex = "06917228195339440B917228214365F700003130805120618000";
    let udh = "06080412340302D4F29C2E03";
    // UDL = 8 header septets + 5 text septets = 13 = 0x0D.
    let pdu = format!("{}0D{}", &hex[..hex.len() - 2], udh);
    let (_, d) = deliver(&pdu, true);
    assert_eq!(
        d.concat,
        Some(ConcatInfo {
            reference: 0x1234,
            total: 3,
            seq: 2
        })
    );
    assert_eq!(d.text, "Test2");
}

#[test]
fn ucs2_deliver_with_emoji_and_concatenation_decodes() {
    // Hand-built: sender +358401234567, DCS 08, UDH 05 00 03 2A 02 01, then "Hi 😀" in UTF-16BE
    // with the emoji as the surrogate pair D83D DE00.
    let pdu = [
        "07915348502020F0", // SMSC +35840502020 (11 digits, F filler)
        "44",               // DELIVER, UDHI, MMS
        "0C91534810325476", // +358401234567
        "00",               // PID
        "08",               // DCS UCS-2
        "62113201000000",   // 2026-11-23 10:00:00 +00:00
        "10",               // UDL 16 octets
        "0500032A0201",     // concat ref 0x2A, 2 parts, part 1
        "00480069",         // "Hi"
        "0020D83DDE00",     // " 😀"
    ]
    .concat();
    let (smsc, d) = deliver(&pdu, true);
    assert_eq!(smsc.as_deref(), Some("+35840502020"));
    assert_eq!(d.encoding, Encoding::Ucs2);
    assert_eq!(d.text, "Hi 😀");
    assert_eq!(
        d.data,
        vec![0x00, 0x48, 0x00, 0x69, 0x00, 0x20, 0xD8, 0x3D, 0xDE, 0x00]
    );
    assert_eq!(
        d.concat,
        Some(ConcatInfo {
            reference: 0x2A,
            total: 2,
            seq: 1
        })
    );
    assert_eq!(d.timestamp.to_rfc3339(), "2026-11-23T10:00:00+00:00");
}

#[test]
fn submit_encoding_matches_published_pdus() {
    // python-gsmmodem's encoder test: MR 0, no VP, no SMSC field content.
    let parts = encode_submit("+27820001111", "Hello World!", &SubmitOptions::default()).unwrap();
    assert_eq!(
        parts,
        vec![SubmitPart {
            hex: "0001000B917228001011F100000CC8329BFD065DDF72363904".into(),
            tpdu_len: 24
        }]
    );
    // Same source, UCS-2 with a 52-week validity (VP F4): its TPDU after the SMSC field.
    let opts = SubmitOptions {
        validity_minutes: Some(52 * 7 * 24 * 60),
        ..Default::default()
    };
    let parts = encode_submit("+123456789", "世界您好！", &opts).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].hex,
        "001100099121436587F90008F40A4E16754C60A8597DFF01"
    );
    assert_eq!(parts[0].tpdu_len, (parts[0].hex.len() - 2) / 2);
    // The dreamfabric tutorial's SUBMIT of "hellohello" with VP AA (4 days).
    let opts = SubmitOptions {
        validity_minutes: Some(4 * 24 * 60),
        ..Default::default()
    };
    let parts = encode_submit("+46708251358", "hellohello", &opts).unwrap();
    assert_eq!(
        parts[0].hex,
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    );
}

#[test]
fn submit_sets_status_report_request_and_concatenation_header() {
    let opts = SubmitOptions {
        request_status_report: true,
        concat_reference: 0x7F,
        ..Default::default()
    };
    let text = "x".repeat(200);
    let parts = encode_submit("+358401234567", &text, &opts).unwrap();
    assert_eq!(parts.len(), 2);
    for (i, p) in parts.iter().enumerate() {
        // 61 = MTI 01 + SRR + UDHI.
        assert!(p.hex.starts_with("0061000C91534810325476"), "{}", p.hex);
        let (smsc, s) = submit(&p.hex, true);
        assert_eq!(smsc, None);
        assert!(s.status_report_requested);
        assert_eq!(
            s.concat,
            Some(ConcatInfo {
                reference: 0x7F,
                total: 2,
                seq: i as u8 + 1
            })
        );
        assert_eq!(p.tpdu_len * 2 + 2, p.hex.len());
    }
    // First part: UDL 160 septets (6-octet UDH = 7 septets + 153), 140 octets of UD.
    assert_eq!(&parts[0].hex[26..28], "A0");
    assert_eq!(parts[0].tpdu_len, 13 + 140);
}

#[test]
fn deliver_and_status_report_encoders_round_trip() {
    let ts = Timestamp::from_unix(1_763_900_000, -20);
    for sender in ["+358401234567", "0401234567", "Klinikka", "12345"] {
        let pdus = encode_deliver(sender, "Aika varattu €5 {ok}", &ts, 0).unwrap();
        assert_eq!(pdus.len(), 1);
        let (smsc, d) = deliver(&pdus[0], true);
        assert_eq!(smsc.as_deref(), Some(SIMULATED_SMSC));
        assert_eq!(d.sender.to_string(), sender);
        assert_eq!(d.timestamp, ts);
        assert_eq!(d.text, "Aika varattu €5 {ok}");
        assert_eq!(d.concat, None);
    }
    let long = "Ääkköset ja emoji 🐶 ".repeat(10);
    for reference in [7u16, 300] {
        let pdus = encode_deliver("+358401234567", &long, &ts, reference).unwrap();
        assert!(pdus.len() > 1);
        let mut joined = String::new();
        for (i, pdu) in pdus.iter().enumerate() {
            let (_, d) = deliver(pdu, true);
            assert_eq!(d.encoding, Encoding::Ucs2);
            let c = d.concat.unwrap();
            assert_eq!(
                (c.reference, usize::from(c.total), usize::from(c.seq)),
                (reference, pdus.len(), i + 1)
            );
            joined.push_str(&d.text);
        }
        assert_eq!(joined, long);
    }
    let discharge = Timestamp::from_unix(1_763_900_030, 8);
    let hex = encode_status_report(42, "+358401234567", &ts, &discharge, 0x46).unwrap();
    let (_, r) = report(&hex, true);
    assert_eq!(
        (
            r.message_ref,
            r.recipient.to_string(),
            r.scts,
            r.discharge_time,
            r.status
        ),
        (42, "+358401234567".to_string(), ts, discharge, 0x46)
    );
}

#[test]
fn json_has_the_keys_other_tools_read() {
    let v = decode_json(
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        true,
    )
    .unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "type": "deliver",
            "smsc": "+27381000015",
            "number": "27838890001",
            "text": "hellohello",
            "encoding": "gsm7",
            "timestamp": "1999-03-29T15:16:59+02:00",
            "concat": null,
        })
    );
    let v = decode_json("06000B910221815716F2709021510121807090215101718000", false).unwrap();
    assert_eq!(v["type"], "status_report");
    assert_eq!(v["smsc"], serde_json::Value::Null);
    assert_eq!(v["message_ref"], 0);
    assert_eq!(v["status"], 0);
    assert_eq!(v["discharge_time"], "2007-09-12T15:10:17+02:00");
    let v = decode_json(
        "0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D85E064941B19CAB060319A5C522289C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD36C36A88C87A7E565D0DB0D82C55EB0DB4B068BCD5C20",
        true,
    )
    .unwrap();
    assert_eq!(
        v["concat"],
        serde_json::json!({"ref": 195, "total": 1, "seq": 1})
    );
    let v = decode_json(
        "07914346466554F601000B914316565811F9000806304253F68449",
        true,
    )
    .unwrap();
    assert_eq!(
        (v["type"].as_str(), v["encoding"].as_str()),
        (Some("submit"), Some("ucs2"))
    );
    assert_eq!(v["timestamp"], serde_json::Value::Null);

    let v = encode_json("+27820001111", "Hello World!", false).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"pdu": "0001000B917228001011F100000CC8329BFD065DDF72363904", "length": 24}])
    );
    let v = encode_json("+27820001111", "Hello World!", true).unwrap();
    assert_eq!(v[0]["pdu"].as_str().map(|s| &s[..4]), Some("0021"));
}

#[test]
fn malformed_pdus_are_rejected_with_the_octet() {
    let classic = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37";
    let cases: Vec<(String, bool, PduError)> = vec![
        ("".into(), true, PduError::Empty),
        ("0791728".into(), true, PduError::OddLength { len: 7 }),
        (
            "07917X83".into(),
            true,
            PduError::BadHex { offset: 2, ch: 'X' },
        ),
        // Truncated in the SMSC field, in the first octet, in the sender, in the timestamp.
        (
            "079172830100".into(),
            true,
            PduError::Truncated {
                offset: 2,
                needed: 2,
                what: "SMSC address",
            },
        ),
        (
            "07917283010010F5".into(),
            true,
            PduError::Truncated {
                offset: 8,
                needed: 1,
                what: "first octet (TP-MTI)",
            },
        ),
        (
            classic[..26].into(),
            true,
            PduError::Truncated {
                offset: 11,
                needed: 4,
                what: "TP-OA",
            },
        ),
        (
            classic[..44].into(),
            true,
            PduError::Truncated {
                offset: 19,
                needed: 4,
                what: "TP-SCTS",
            },
        ),
        // Missing UDL.
        (
            classic[..52].into(),
            true,
            PduError::Truncated {
                offset: 26,
                needed: 1,
                what: "user data length",
            },
        ),
        // UDL 10 septets need 9 octets; one is missing.
        (
            classic[..classic.len() - 2].into(),
            true,
            PduError::UdlTooLong {
                offset: 26,
                udl: 10,
                needed: 9,
                available: 8,
            },
        ),
        // One octet too many after the user data.
        (
            format!("{classic}00"),
            true,
            PduError::TrailingData { offset: 36 },
        ),
        // SMSC length 12 octets is more than the field can hold.
        (
            "0C917283010010F5".into(),
            true,
            PduError::BadAddressLength {
                offset: 0,
                len: 12,
                reason: "the SMSC field holds at most 11 octets",
            },
        ),
        // Sender length 0x1F semi-octets.
        (
            classic.replacen("040BC8", "041FC8", 1),
            true,
            PduError::BadAddressLength {
                offset: 9,
                len: 31,
                reason: "a TP address holds at most 20 semi-octets",
            },
        ),
        // A filler nibble inside the sender number.
        (
            classic.replacen("7238880900F1", "72388809F0F1", 1),
            true,
            PduError::BadSemiOctet {
                offset: 15,
                nibble: 0xF,
                what: "TP-OA",
            },
        ),
        // Reserved MTI 11.
        (
            classic.replacen("F5040B", "F5070B", 1),
            true,
            PduError::UnknownMti { offset: 8, mti: 3 },
        ),
        // Decoding without the SMSC flag reads 07 as the first octet: MTI 11.
        (
            classic.into(),
            false,
            PduError::UnknownMti { offset: 0, mti: 3 },
        ),
        // A month 13 in the time stamp.
        (
            classic.replacen("99309251", "99319251", 1),
            true,
            PduError::BadTimestamp {
                offset: 19,
                reason: "month out of range",
            },
        ),
        // Real PDU whose UCS-2 UDL (A0) is longer than its data (python-gsmmodem).
        (
            "0041010C910661345542F60008A0050003000301306F3044".into(),
            true,
            PduError::UdlTooLong {
                offset: 13,
                udl: 160,
                needed: 160,
                available: 10,
            },
        ),
        // UDHI set, UDHL 0x09 runs past the 6 octets of UCS-2 user data.
        (
            "00400491214300086211320100000006090003000201".into(),
            true,
            PduError::UdhlPastEnd {
                offset: 16,
                udhl: 9,
            },
        ),
        // IE 00 with length 2.
        (
            "004004912143000862113201000000070400020102FFFF".into(),
            true,
            PduError::BadInformationElement {
                offset: 17,
                iei: 0,
                reason: "concatenation IE with 8-bit reference must be 3 octets",
            },
        ),
        // IE length past the end of the header.
        (
            "00400491214300086211320100000006030805FF0041".into(),
            true,
            PduError::BadInformationElement {
                offset: 17,
                iei: 8,
                reason: "runs past the end of the header",
            },
        ),
        // GSM-7: UDHL 5 (6 octets = 7 septets) but UDL says 3 septets.
        (
            "00400491214300006211320100000006050003010201".into(),
            true,
            PduError::UdhlPastEnd {
                offset: 16,
                udhl: 5,
            },
        ),
    ];
    for (hex, with_smsc, want) in cases {
        assert_eq!(decode(&hex, with_smsc).unwrap_err(), want, "{hex}");
        // The message is printable and names the offset where there is one.
        let _ = want.to_string();
    }
}

#[test]
fn concatenation_ie_with_impossible_numbers_is_ignored_as_the_spec_asks() {
    // seq 3 of total 2, then seq 0: the IE is ignored, the text is kept.
    for ie in ["0500030A0203", "0500030A0200", "0500030A0001"] {
        let hex = format!(
            "004004912143000862113201000000{:02X}{}0041",
            ie.len() / 2 + 2,
            ie
        );
        let (_, d) = deliver(&hex, true);
        assert_eq!((d.concat, d.text.as_str()), (None, "A"), "{ie}");
    }
}

#[test]
fn encoder_rejects_what_cannot_be_sent() {
    let o = SubmitOptions::default();
    assert!(matches!(
        encode_submit("+35840 123", "hi", &o),
        Err(PduError::InvalidNumber { .. })
    ));
    assert!(matches!(
        encode_submit("Clinic", "hi", &o),
        Err(PduError::InvalidNumber { .. })
    ));
    assert_eq!(
        encode_submit("+358401234567", &"a".repeat(153 * 255 + 1), &o).unwrap_err(),
        PduError::TooManyParts { parts: 256 }
    );
    let o = SubmitOptions {
        validity_minutes: Some(u32::MAX),
        ..Default::default()
    };
    assert_eq!(
        encode_submit("+358401234567", "hi", &o).unwrap_err(),
        PduError::BadValidity { minutes: u32::MAX }
    );
    let ts = Timestamp {
        month: 2,
        day: 30,
        ..Timestamp::from_unix(0, 0)
    };
    assert!(matches!(
        encode_deliver("+1", "x", &ts, 0),
        Err(PduError::BadTimestamp { .. })
    ));
    assert!(matches!(
        encode_deliver("AVeryLongSenderName", "x", &Timestamp::from_unix(0, 0), 0),
        Err(PduError::BadAlphanumeric { .. })
    ));
}

/// Characters phones actually send: GSM-7 base and extension, Latin-1, Cyrillic, CJK, emoji, and
/// line breaks.
fn text_strategy() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        4 => prop::sample::select("abcXYZ0189 .,!?@£$¥èéÇΔ_ÆßÉ¤¡¿äöñüà\n\r".chars().collect::<Vec<_>>()),
        2 => prop::sample::select("€[]{}\\^~|\u{0C}".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("çâœжЖ中文ąč’“”".chars().collect::<Vec<_>>()),
        1 => prop::sample::select("😀🐶👍🏽🇫🇮".chars().collect::<Vec<_>>()),
        1 => any::<char>(),
    ];
    prop::collection::vec(chars, 0..700).prop_map(|v| v.into_iter().collect())
}

/// Reference count of parts the way a phone shows it while typing: greedy fill of 153/67 (or
/// one part of 160/70), escapes and surrogate pairs never split.
fn phone_part_count(text: &str) -> usize {
    let gsm = gsm7::septet_len(text).is_some();
    let cost = |c: char| {
        if gsm {
            gsm7::septet_len(&c.to_string()).unwrap_or(1)
        } else {
            c.len_utf16()
        }
    };
    let (single, part) = if gsm { (160, 153) } else { (70, 67) };
    let total: usize = text.chars().map(cost).sum();
    if total <= single {
        return 1;
    }
    let mut parts = 1;
    let mut used = 0;
    for c in text.chars() {
        if used + cost(c) > part {
            parts += 1;
            used = 0;
        }
        used += cost(c);
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_text_survives_encode_then_decode(text in text_strategy(), report in any::<bool>(), reference in any::<u8>()) {
        let opts = SubmitOptions { request_status_report: report, concat_reference: reference, ..Default::default() };
        let parts = encode_submit("+358401234567", &text, &opts).unwrap();
        let (encoding, split) = split_text(&text).unwrap();
        prop_assert_eq!(parts.len(), split.len());
        prop_assert_eq!(parts.len(), phone_part_count(&text));
        let mut joined = String::new();
        for (i, part) in parts.iter().enumerate() {
            prop_assert!(part.tpdu_len <= 175, "TPDU of {} octets", part.tpdu_len);
            prop_assert_eq!(part.tpdu_len * 2 + 2, part.hex.len());
            let (_, s) = submit(&part.hex, true);
            prop_assert_eq!(s.encoding, encoding);
            prop_assert_eq!(s.status_report_requested, report);
            if parts.len() == 1 {
                prop_assert_eq!(s.concat, None);
            } else {
                prop_assert_eq!(s.concat, Some(ConcatInfo { reference: u16::from(reference), total: parts.len() as u8, seq: i as u8 + 1 }));
            }
            prop_assert_eq!(&s.text, &split[i]);
            joined.push_str(&s.text);
        }
        prop_assert_eq!(joined, text);
    }

    #[test]
    fn parts_are_full_and_never_split_an_escape_or_a_surrogate_pair(text in text_strategy()) {
        let (encoding, parts) = split_text(&text).unwrap();
        let size = |p: &str| match encoding {
            Encoding::Gsm7 => gsm7::septet_len(p).unwrap(),
            _ => ucs2::unit_len(p),
        };
        let (single, part) = if encoding == Encoding::Gsm7 { (160, 153) } else { (70, 67) };
        if parts.len() == 1 {
            prop_assert!(size(&parts[0]) <= single);
        } else {
            prop_assert!(parts.iter().map(|p| size(p)).sum::<usize>() > single);
            for (i, p) in parts.iter().enumerate() {
                prop_assert!(size(p) <= part);
                // Full: the next part's first character would not have fit.
                if let Some(next) = parts.get(i + 1).and_then(|n| n.chars().next()) {
                    prop_assert!(size(p) + size(&next.to_string()) > part);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics_on_arbitrary_octets(bytes in prop::collection::vec(any::<u8>(), 0..200), with_smsc in any::<bool>()) {
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let _ = decode(&hex, with_smsc);
    }

    #[test]
    fn timestamps_round_trip_through_unix_time(secs in 0i64..4_000_000_000, quarters in -79i8..=79) {
        let ts = Timestamp::from_unix(secs, quarters);
        prop_assert_eq!(ts.to_unix(), secs);
    }
}
