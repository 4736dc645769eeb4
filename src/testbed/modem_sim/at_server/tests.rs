use super::*;

fn config() -> ModemConfig {
    ModemConfig {
        model: Model::Generic,
        echo: false,
        pin: None,
        registered: true,
        storage_slots: 5,
        storage_full: false,
        seed: 7,
    }
}

fn faults() -> Faults {
    Faults {
        send_latency: Duration::ZERO,
        cms_error: 500,
        cms_error_rate: 0.0,
        cms_error_on_send: None,
        hang_at: None,
        garbage_rate: 0.0,
        interleave_urcs: false,
        auto_report: true,
        report_delay: Duration::from_millis(10),
        cds_ack_timeout: Duration::from_secs(15),
        cds_resends: 2,
        csms1: true,
        lose_acks: 0,
    }
}

fn modem_with(f: impl FnOnce(&mut ModemConfig, &mut Faults)) -> Modem {
    let mut c = config();
    let mut fl = faults();
    f(&mut c, &mut fl);
    Modem::new(c, fl, 1_700_000_000)
}

fn bytes_of(outs: &[Out]) -> String {
    let mut s = Vec::new();
    for o in outs {
        if let Out::Bytes(b) = o {
            s.extend_from_slice(b);
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn talk(m: &mut Modem, input: &str) -> String {
    bytes_of(&m.feed(input.as_bytes(), 1_700_000_000_000))
}

fn submit(to: &str, text: &str, report: bool) -> Vec<pdu::SubmitPart> {
    pdu::encode_submit(to, text, &pdu::SubmitOptions { request_status_report: report, ..Default::default() }).unwrap()
}

fn send(m: &mut Modem, part: &pdu::SubmitPart) -> String {
    let prompt = talk(m, &format!("AT+CMGS={}\r", part.tpdu_len));
    assert_eq!(prompt, "\r\n> ");
    talk(m, &format!("{}\x1a", part.hex))
}

#[test]
fn basic_commands_answer_in_modem_framing() {
    let mut m = modem_with(|_, _| {});
    let table = [
        ("AT\r", "\r\nOK\r\n"),
        ("ATE0\r", "\r\nOK\r\n"),
        ("AT+CSQ\r", "\r\n+CSQ: 20,99\r\n\r\nOK\r\n"),
        ("AT+CMGF=0\r", "\r\nOK\r\n"),
        ("AT+CMGF?\r", "\r\n+CMGF: 0\r\n\r\nOK\r\n"),
        ("AT+CREG?\r", "\r\n+CREG: 0,1\r\n\r\nOK\r\n"),
        ("AT+CEREG=1\r", "\r\nOK\r\n"),
        ("AT+CEREG?\r", "\r\n+CEREG: 1,1\r\n\r\nOK\r\n"),
        ("AT+CPIN?\r", "\r\n+CPIN: READY\r\n\r\nOK\r\n"),
        ("AT+CSCA?\r", "\r\n+CSCA: \"+358405202000\",145\r\n\r\nOK\r\n"),
        ("AT+CPMS=\"SM\",\"SM\",\"SM\"\r", "\r\n+CPMS: 0,5,0,5,0,5\r\n\r\nOK\r\n"),
        ("AT+CNMI=2,1,0,2,0\r", "\r\nOK\r\n"),
        ("AT+CNMI?\r", "\r\n+CNMI: 2,1,0,2,0\r\n\r\nOK\r\n"),
        ("AT+CSMS=1\r", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"),
        ("AT+CGSN\r", "\r\n490154203237518\r\n\r\nOK\r\n"),
        ("AT+CMGL=?\r", "\r\n+CMGL: (0-4)\r\n\r\nOK\r\n"),
        ("AT+CMGR=?\r", "\r\nOK\r\n"),
        ("AT+CPMS=?\r", "\r\n+CPMS: (\"SM\"),(\"SM\"),(\"SM\")\r\n\r\nOK\r\n"),
        ("AT+NOPE=?\r", "\r\nERROR\r\n"),
        ("AT+BOGUS\r", "\r\nERROR\r\n"),
        ("ATX9\r", "\r\nERROR\r\n"),
        ("AT+CNMA\r", "\r\nERROR\r\n"),
        ("at+cmgf=1;+cmgf?\r", "\r\n+CMGF: 1\r\n\r\nOK\r\n"),
    ];
    for (input, want) in table {
        assert_eq!(talk(&mut m, input), want, "input {input:?}");
    }
}

#[test]
fn echo_repeats_input_byte_for_byte_until_ate0() {
    let mut m = modem_with(|c, _| c.echo = true);
    assert_eq!(talk(&mut m, "ATE0\r"), "ATE0\r\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "ATE1\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT\r"), "AT\r\r\nOK\r\n");
}

#[test]
fn stray_bytes_before_at_are_skipped() {
    let mut m = modem_with(|_, _| {});
    assert_eq!(talk(&mut m, "\x1a\x00xxAT\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "\r\n\r\n"), "");
    assert_eq!(talk(&mut m, "hello\r"), "");
}

#[test]
fn cmee_selects_plain_numeric_or_verbose_errors() {
    let mut m = modem_with(|_, _| {});
    assert_eq!(talk(&mut m, "AT+CPIN=\"1111\"\r"), "\r\nERROR\r\n");
    talk(&mut m, "AT+CMEE=1\r");
    assert_eq!(talk(&mut m, "AT+CPIN=\"1111\"\r"), "\r\n+CME ERROR: 3\r\n");
    assert_eq!(talk(&mut m, "AT+CMGR=99\r"), "\r\n+CMS ERROR: 321\r\n");
    talk(&mut m, "AT+CMEE=2\r");
    assert_eq!(talk(&mut m, "AT+CPIN=\"1111\"\r"), "\r\n+CME ERROR: operation not allowed\r\n");
    assert_eq!(talk(&mut m, "AT+CMGR=99\r"), "\r\n+CMS ERROR: invalid memory index\r\n");
}

#[test]
fn identity_answers_follow_the_model() {
    let cases = [
        (Model::Sim800, "SIMCOM_SIM800L"),
        (Model::Sim7600, "SIMCOM_SIM7600E-H"),
        (Model::Ec25, "EC25"),
        (Model::E3372, "E3372"),
    ];
    for (model, want) in cases {
        let mut m = modem_with(|c, _| c.model = model);
        assert_eq!(talk(&mut m, "AT+CGMM\r"), format!("\r\n{want}\r\n\r\nOK\r\n"));
    }
}

#[test]
fn three_wrong_pins_lock_the_sim_and_the_puk_unlocks_it() {
    let mut m = modem_with(|c, _| c.pin = Some("1234".into()));
    talk(&mut m, "AT+CMEE=1\r");
    assert_eq!(talk(&mut m, "AT+CPIN?\r"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CMGL=4\r"), "\r\n+CMS ERROR: 311\r\n");
    assert_eq!(talk(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 11\r\n");
    for _ in 0..3 {
        assert_eq!(talk(&mut m, "AT+CPIN=\"0000\"\r"), "\r\n+CME ERROR: 16\r\n");
    }
    assert_eq!(talk(&mut m, "AT+CPIN?\r"), "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n");
    // The right PIN no longer helps.
    assert_eq!(talk(&mut m, "AT+CPIN=\"1234\"\r"), "\r\n+CME ERROR: 16\r\n");
    assert_eq!(talk(&mut m, "AT+CMGL=4\r"), "\r\n+CMS ERROR: 316\r\n");
    assert_eq!(talk(&mut m, &format!("AT+CPIN=\"{PUK}\",\"4321\"\r")), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CPIN?\r"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
    assert_eq!(m.stats.get("AT+CPIN="), Some(&5));
}

#[test]
fn right_pin_unlocks_and_a_power_cycle_asks_again() {
    let mut m = modem_with(|c, _| c.pin = Some("1234".into()));
    assert_eq!(talk(&mut m, "AT+CPIN=1234\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CIMI\r"), "\r\n244910000000001\r\n\r\nOK\r\n");
    m.power_cycle();
    assert_eq!(talk(&mut m, "AT+CPIN?\r"), "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n");
}

#[test]
fn not_registered_modem_searches_and_refuses_to_send() {
    let mut m = modem_with(|c, _| c.registered = false);
    talk(&mut m, "AT+CMEE=1\r");
    assert_eq!(talk(&mut m, "AT+CREG?\r"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
    let part = &submit("+358401234567", "hi", false)[0];
    assert_eq!(send(&mut m, part), "\r\n+CMS ERROR: 331\r\n");
    talk(&mut m, "AT+CREG=1\r");
    let urc = bytes_of(&m.set_registered(true));
    assert_eq!(urc, "\r\n+CREG: 1\r\n");
    assert_eq!(send(&mut m, part), "\r\n+CMGS: 0\r\n\r\nOK\r\n");
}

#[test]
fn pdu_send_is_logged_decoded_and_asks_for_a_status_report() {
    let mut m = modem_with(|_, _| {});
    let part = &submit("+358401234567", "Hello €", true)[0];
    talk(&mut m, &format!("AT+CMGS={}\r", part.tpdu_len));
    let outs = m.feed(format!("{}\x1a", part.hex).as_bytes(), 42);
    assert_eq!(bytes_of(&outs), "\r\n+CMGS: 0\r\n\r\nOK\r\n");
    assert!(outs.iter().any(|o| matches!(o, Out::Schedule(_, Event::StatusReport { message_ref: 0, status: 0, .. }))));
    let rec = &m.sent[0];
    assert_eq!(rec.to, "+358401234567");
    assert_eq!(rec.text, "Hello €");
    assert_eq!(rec.encoding, "gsm7");
    assert_eq!(rec.at, 42);
    assert!(rec.status_report_requested);
}

#[test]
fn send_latency_comes_before_the_answer() {
    let mut m = modem_with(|_, f| f.send_latency = Duration::from_millis(1500));
    let part = &submit("+358401234567", "hi", false)[0];
    talk(&mut m, &format!("AT+CMGS={}\r", part.tpdu_len));
    let outs = m.feed(format!("{}\x1a", part.hex).as_bytes(), 0);
    assert_eq!(outs.first(), Some(&Out::Delay(Duration::from_millis(1500))));
}

#[test]
fn wrong_length_or_bad_pdu_gives_304() {
    let mut m = modem_with(|_, _| {});
    talk(&mut m, "AT+CMEE=1\r");
    let part = &submit("+358401234567", "hi", false)[0];
    let cases = [
        (part.tpdu_len + 1, part.hex.clone()),
        (part.tpdu_len - 1, part.hex.clone()),
        (part.tpdu_len, format!("{}0", part.hex)),
        (part.tpdu_len, "ZZ".repeat(part.tpdu_len + 1)),
        (3, "00010203".to_string()),
    ];
    for (len, hex) in cases {
        assert_eq!(talk(&mut m, &format!("AT+CMGS={len}\r")), "\r\n> ");
        assert_eq!(talk(&mut m, &format!("{hex}\x1a")), "\r\n+CMS ERROR: 304\r\n", "len {len} hex {hex}");
    }
    assert_eq!(talk(&mut m, "AT+CMGS=0\r"), "\r\n+CMS ERROR: 304\r\n");
    assert!(m.sent.is_empty());
}

#[test]
fn escape_aborts_the_prompt_without_sending() {
    let mut m = modem_with(|_, _| {});
    let part = &submit("+358401234567", "hi", false)[0];
    talk(&mut m, &format!("AT+CMGS={}\r", part.tpdu_len));
    assert_eq!(talk(&mut m, &format!("{}\x1b", part.hex)), "\r\nOK\r\n");
    assert!(m.sent.is_empty());
    assert_eq!(talk(&mut m, "AT\r"), "\r\nOK\r\n");
}

#[test]
fn message_reference_counts_up_and_wraps_at_256() {
    let mut m = modem_with(|_, _| {});
    let part = &submit("+358401234567", "hi", false)[0];
    for i in 0..256 {
        assert_eq!(send(&mut m, part), format!("\r\n+CMGS: {i}\r\n\r\nOK\r\n"));
    }
    assert_eq!(send(&mut m, part), "\r\n+CMGS: 0\r\n\r\nOK\r\n");
}

#[test]
fn nth_send_fails_with_the_configured_cms_error() {
    let mut m = modem_with(|_, f| {
        f.cms_error_on_send = Some(2);
        f.cms_error = 42;
    });
    talk(&mut m, "AT+CMEE=1\r");
    let part = &submit("+358401234567", "hi", false)[0];
    assert_eq!(send(&mut m, part), "\r\n+CMGS: 0\r\n\r\nOK\r\n");
    assert_eq!(send(&mut m, part), "\r\n+CMS ERROR: 42\r\n");
    assert_eq!(send(&mut m, part), "\r\n+CMGS: 1\r\n\r\nOK\r\n");
    assert_eq!(m.sent.len(), 2);
}

#[test]
fn error_rate_one_fails_every_send() {
    let mut m = modem_with(|_, f| f.cms_error_rate = 1.0);
    talk(&mut m, "AT+CMEE=1\r");
    let part = &submit("+358401234567", "hi", false)[0];
    for _ in 0..5 {
        assert_eq!(send(&mut m, part), "\r\n+CMS ERROR: 500\r\n");
    }
}

#[test]
fn hang_after_n_commands_drops_every_later_answer_until_cleared() {
    let mut m = modem_with(|c, f| {
        f.hang_at = Some(2);
        c.echo = true;
    });
    assert_eq!(talk(&mut m, "AT\r"), "AT\r\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT\r"), "AT\r\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT\r"), "");
    assert_eq!(talk(&mut m, "AT+CSQ\r"), "");
    assert_eq!(m.commands_total, 4);
    m.apply(&FaultUpdate { hang_after: Some(None), ..Default::default() });
    assert_eq!(talk(&mut m, "AT\r"), "AT\r\r\nOK\r\n");
}

fn inbound(m: &mut Modem, from: &str, text: &str) -> Vec<String> {
    m.encode_inbound(from, text, 1_700_000_000).unwrap()
}

#[test]
fn delivered_message_is_stored_announced_read_and_deleted() {
    let mut m = modem_with(|_, _| {});
    let pdus = inbound(&mut m, "+358401234567", "Moi");
    let (idx, outs) = m.deliver(pdus.clone());
    assert_eq!(idx, vec![Some(1)]);
    assert_eq!(bytes_of(&outs), "\r\n+CMTI: \"SM\",1\r\n");
    let len = tpdu_len(&pdus[0]).unwrap();
    assert_eq!(talk(&mut m, "AT+CMGR=1\r"), format!("\r\n+CMGR: 0,,{len}\r\n{}\r\n\r\nOK\r\n", pdus[0]));
    // Now read.
    assert_eq!(talk(&mut m, "AT+CMGL=4\r"), format!("\r\n+CMGL: 1,1,,{len}\r\n{}\r\n\r\nOK\r\n", pdus[0]));
    assert_eq!(talk(&mut m, "AT+CMGL=0\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CMGD=1\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CMGR=1\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CMGD=9\r"), "\r\nERROR\r\n");
}

#[test]
fn full_store_holds_deliveries_in_the_network_until_a_slot_frees() {
    let mut m = modem_with(|c, _| {
        c.storage_slots = 2;
        c.storage_full = true;
    });
    assert_eq!(m.storage.used(), 2);
    let pdus = inbound(&mut m, "+358401234567", "waiting");
    let (idx, outs) = m.deliver(pdus.clone());
    assert_eq!(idx, vec![None]);
    assert!(outs.is_empty());
    assert!(m.retry_network_queue().is_empty());
    assert_eq!(talk(&mut m, "AT+CMGD=2\r"), "\r\nOK\r\n");
    assert_eq!(bytes_of(&m.retry_network_queue()), "\r\n+CMTI: \"SM\",2\r\n");
    assert_eq!(m.storage.queued(), 0);
    assert!(talk(&mut m, "AT+CMGR=2\r").contains(&pdus[0]));
}

#[test]
fn quectel_indices_start_at_zero() {
    let mut m = modem_with(|c, _| c.model = Model::Ec25);
    let pdus = inbound(&mut m, "+358401234567", "x");
    assert_eq!(m.deliver(pdus).0, vec![Some(0)]);
}

#[test]
fn cnmi_mt2_delivers_directly_and_csms1_expects_one_cnma() {
    let mut m = modem_with(|_, _| {});
    talk(&mut m, "AT+CSMS=1\r");
    talk(&mut m, "AT+CNMI=2,2,0,0,0\r");
    talk(&mut m, "AT+CMEE=1\r");
    let pdus = inbound(&mut m, "+358401234567", "direct");
    let (idx, outs) = m.deliver(pdus.clone());
    assert_eq!(idx, vec![None]);
    let len = tpdu_len(&pdus[0]).unwrap();
    assert_eq!(bytes_of(&outs), format!("\r\n+CMT: ,{len}\r\n{}\r\n", pdus[0]));
    assert_eq!(talk(&mut m, "AT+CNMA\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CNMA\r"), "\r\n+CMS ERROR: 340\r\n");
}

#[test]
fn status_reports_follow_cnmi_ds() {
    let mut m = modem_with(|_, _| {});
    assert!(m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap().is_empty());
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    let cds = bytes_of(&m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap());
    let pdu_line = cds.split("\r\n").nth(2).unwrap().to_string();
    assert!(cds.starts_with("\r\n+CDS: "), "{cds}");
    match pdu::decode(&pdu_line, true).unwrap().message {
        pdu::Message::StatusReport(r) => {
            assert_eq!(r.message_ref, 3);
            assert_eq!(r.status, 0);
        }
        other => panic!("not a status report: {other:?}"),
    }
    talk(&mut m, "AT+CNMI=2,1,0,2,0\r");
    let cdsi = bytes_of(&m.status_report(4, "+358401234567", 0x46, 1_700_000_000).unwrap());
    assert_eq!(cdsi, "\r\n+CDSI: \"SM\",1\r\n");
}

#[test]
fn interleaved_urcs_sit_inside_responses_and_next_to_the_prompt() {
    let mut m = modem_with(|_, f| f.interleave_urcs = true);
    for _ in 0..20 {
        let r = talk(&mut m, "AT+CSQ\r");
        assert!(r.ends_with("\r\nOK\r\n"), "{r}");
        assert!(r.contains("\r\n+CSQ: 20,99\r\n"), "{r}");
        assert_eq!(r.matches("\r\n").count(), 6, "one URC line added: {r:?}");
    }
    let r = talk(&mut m, "AT+CMGS=10\r");
    assert!(r.starts_with("\r\n> \r\n"), "{r:?}");
}

#[test]
fn garbage_rate_one_puts_stray_bytes_before_every_response() {
    let mut m = modem_with(|_, f| f.garbage_rate = 1.0);
    for _ in 0..10 {
        let r = talk(&mut m, "AT\r");
        assert!(!r.starts_with('\r'), "{r:?}");
        assert!(r.ends_with("\r\nOK\r\n"));
    }
}

#[test]
fn text_mode_reads_show_sender_and_text() {
    let mut m = modem_with(|_, _| {});
    let pdus = inbound(&mut m, "+358401234567", "Hei");
    m.deliver(pdus);
    talk(&mut m, "AT+CMGF=1\r");
    let r = talk(&mut m, "AT+CMGR=1\r");
    assert!(r.starts_with("\r\n+CMGR: \"REC UNREAD\",\"+358401234567\",,\""), "{r}");
    assert!(r.ends_with("\r\nHei\r\n\r\nOK\r\n"), "{r}");
    let r = talk(&mut m, "AT+CMGL=\"ALL\"\r");
    assert!(r.starts_with("\r\n+CMGL: 1,\"REC READ\",\"+358401234567\""), "{r}");
}

#[test]
fn text_mode_send_is_logged() {
    let mut m = modem_with(|_, _| {});
    talk(&mut m, "AT+CMGF=1\r");
    assert_eq!(talk(&mut m, "AT+CMGS=\"+358401234567\"\r"), "\r\n> ");
    assert_eq!(talk(&mut m, "plain text\x1a"), "\r\n+CMGS: 0\r\n\r\nOK\r\n");
    assert_eq!(m.sent[0].text, "plain text");
    assert_eq!(m.sent[0].to, "+358401234567");
}

#[test]
fn stats_keys_name_the_command_and_its_form() {
    let table = [
        ("AT+CPIN=\"1234\"", "AT+CPIN="),
        ("AT+CPIN?", "AT+CPIN?"),
        ("AT+CMGL=?", "AT+CMGL=?"),
        ("ATE0", "ATE0"),
        ("at+csq", "AT+CSQ"),
        ("AT+CMGF=0;+CNMI=2,1", "AT+CMGF="),
        ("ATE0;+CMEE=1", "ATE0"),
    ];
    for (cmd, key) in table {
        assert_eq!(stats_key(cmd), key, "{cmd}");
    }
}

#[test]
fn argument_and_command_splitting_respect_quotes() {
    assert_eq!(split_args("\"SM\",\"a,b\", 3"), vec!["\"SM\"", "\"a,b\"", "3"]);
    assert_eq!(split_commands("+CMGF=0;+CSCA=\"+1;2\""), vec!["+CMGF=0", "+CSCA=\"+1;2\""]);
    assert_eq!(split_commands(""), Vec::<String>::new());
}

#[test]
fn tpdu_length_excludes_the_smsc_field_and_rejects_junk() {
    let table = [
        ("0001000B", Some(3)),
        ("07911326040000F0040B91", Some(3)),
        ("00", None),
        ("0", None),
        ("", None),
        ("0G01", None),
        ("0F01", None),
    ];
    for (hex, want) in table {
        assert_eq!(tpdu_len(hex), want, "{hex}");
    }
}

fn cds_lines(s: &str) -> usize {
    s.matches("+CDS: ").count()
}

fn ack_timeout_id(outs: &[Out]) -> u64 {
    outs.iter()
        .find_map(|o| match o {
            Out::Schedule(_, Event::CdsAckTimeout { id }) => Some(*id),
            _ => None,
        })
        .expect("no ack timeout scheduled")
}

#[test]
fn csms1_cds_waits_for_cnma_one_at_a_time_and_the_next_follows_the_ok() {
    let mut m = modem_with(|_, _| {});
    assert_eq!(talk(&mut m, "AT+CSMS=1\r"), "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    talk(&mut m, "AT+CMEE=1\r");
    let first = m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap();
    assert_eq!(cds_lines(&bytes_of(&first)), 1);
    ack_timeout_id(&first);
    let second = m.status_report(4, "+358401234567", 0, 1_700_000_000).unwrap();
    assert!(second.is_empty(), "a second +CDS before the ack of the first: {second:?}");
    let after_ack = talk(&mut m, "AT+CNMA\r");
    assert!(after_ack.starts_with("\r\nOK\r\n\r\n+CDS: "), "{after_ack:?}");
    assert_eq!(talk(&mut m, "AT+CNMA=0\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, "AT+CNMA\r"), "\r\n+CMS ERROR: 340\r\n");
    assert_eq!(m.stats.get("(report acknowledged)"), Some(&2));
    assert_eq!(m.stats.get("(unexpected +CNMA)"), Some(&1));
}

#[test]
fn unacknowledged_cds_is_resent_then_stored() {
    let mut m = modem_with(|_, f| f.cds_resends = 2);
    talk(&mut m, "AT+CSMS=1\r");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    let outs = m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap();
    let pdu_line = bytes_of(&outs).split("\r\n").nth(2).unwrap().to_string();
    let mut id = ack_timeout_id(&outs);
    assert!(m.cds_ack_timeout(id + 100).is_empty(), "a stale timer does nothing");
    for _ in 0..2 {
        let again = m.cds_ack_timeout(id);
        assert!(bytes_of(&again).contains(&pdu_line), "the same report is resent");
        id = ack_timeout_id(&again);
    }
    let stored = bytes_of(&m.cds_ack_timeout(id));
    assert_eq!(stored, "\r\n+CDSI: \"SM\",1\r\n");
    assert_eq!(m.storage.used(), 1);
    assert_eq!(m.stats.get("(report resent)"), Some(&2));
    assert!(talk(&mut m, "AT+CNMA\r").contains("ERROR"), "nothing waits for an ack any more");
}

#[test]
fn an_acknowledged_cds_is_not_resent() {
    let mut m = modem_with(|_, _| {});
    talk(&mut m, "AT+CSMS=1\r");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    let id = ack_timeout_id(&m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap());
    assert_eq!(talk(&mut m, "AT+CNMA=2\r"), "\r\nOK\r\n", "a negative ack ends the wait too");
    assert!(m.cds_ack_timeout(id).is_empty());
    assert_eq!(m.stats.get("(report refused by +CNMA=2)"), Some(&1));
}

#[test]
fn phase_2_modem_refuses_csms1_and_sends_cds_without_waiting() {
    let mut m = modem_with(|_, f| f.csms1 = false);
    talk(&mut m, "AT+CMEE=1\r");
    assert_eq!(talk(&mut m, "AT+CSMS=1\r"), "\r\n+CMS ERROR: 303\r\n");
    assert_eq!(talk(&mut m, "AT+CSMS=0\r"), "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    let a = m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap();
    let b = m.status_report(4, "+358401234567", 0, 1_700_000_000).unwrap();
    assert_eq!((cds_lines(&bytes_of(&a)), cds_lines(&bytes_of(&b))), (1, 1));
    assert!(!a.iter().any(|o| matches!(o, Out::Schedule(..))), "nothing waits for an ack");
}

#[test]
fn an_ack_joined_to_a_send_acknowledges_and_prompts_and_a_refused_one_stops_the_line() {
    let mut m = modem_with(|_, _| {});
    talk(&mut m, "AT+CSMS=1\r");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    talk(&mut m, "AT+CMEE=1\r");
    m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap();
    m.status_report(4, "+358401234567", 0, 1_700_000_000).unwrap();
    let part = &submit("+358401234567", "hi", true)[0];
    assert_eq!(talk(&mut m, &format!("AT+CNMA;+CMGS={}\r", part.tpdu_len)), "\r\n> ");
    let answer = talk(&mut m, &format!("{}\x1a", part.hex));
    // The queued report follows the send's final result, not the prompt.
    let ok = answer.find("\r\nOK\r\n").unwrap();
    let cds = answer.find("+CDS: ").unwrap();
    assert!(answer.contains("+CMGS: ") && ok < cds, "{answer:?}");
    assert_eq!(talk(&mut m, "AT+CNMA\r"), "\r\nOK\r\n");
    assert_eq!(talk(&mut m, &format!("AT+CNMA;+CMGS={}\r", part.tpdu_len)), "\r\n+CMS ERROR: 340\r\n");
    assert_eq!(m.sent.len(), 1);
}

#[test]
fn a_lost_ack_makes_the_network_deliver_the_same_report_again() {
    let mut m = modem_with(|_, f| f.lose_acks = 1);
    talk(&mut m, "AT+CSMS=1\r");
    talk(&mut m, "AT+CNMI=2,1,0,1,0\r");
    let first = bytes_of(&m.status_report(3, "+358401234567", 0, 1_700_000_000).unwrap());
    let outs = m.feed(b"AT+CNMA\r", 1_700_000_000_000);
    assert_eq!(bytes_of(&outs), "\r\nOK\r\n");
    let hex = outs
        .iter()
        .find_map(|o| match o {
            Out::Schedule(_, Event::Redeliver { hex }) => Some(hex.clone()),
            _ => None,
        })
        .expect("the network redelivers");
    assert_eq!(bytes_of(&m.route_report(hex)), first, "the same +CDS again");
    assert_eq!(talk(&mut m, "AT+CNMA\r"), "\r\nOK\r\n");
    assert_eq!(m.stats.get("(report acknowledged)"), Some(&2));
    assert_eq!(m.stats.get("(ack lost)"), Some(&1));
}
