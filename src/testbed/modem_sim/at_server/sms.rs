//! The SMS commands of the simulated modem (27.005): sending with the `> ` prompt, reading,
//! listing and deleting stored messages, and what the network delivers (messages, reports).

use super::syntax::{num_arg, text_mode_view, tpdu_len, unquote};
use super::*;

impl Modem {
    pub(super) fn start_send(&mut self, a: &[String]) -> Reply {
        if let Some(e) = self.sim_ready_cms() {
            return e;
        }
        let first = a.first().map(String::as_str).unwrap_or("");
        if self.cmgf == 1 {
            let to = unquote(first);
            if to.is_empty() {
                return Reply::Error(self.cms(305));
            }
            self.mode = Mode::Prompt { len: 0, text_to: Some(to), body: Vec::new() };
            return Reply::Prompt;
        }
        match first.trim().parse::<usize>() {
            Ok(len) if (1..=175).contains(&len) => {
                self.mode = Mode::Prompt { len, text_to: None, body: Vec::new() };
                Reply::Prompt
            }
            _ => Reply::Error(self.cms(304)),
        }
    }

    pub(super) fn finish_send(&mut self, now_ms: u64, out: &mut Vec<Out>) {
        let Mode::Prompt { len, text_to, body } = std::mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        let record = match text_to {
            Some(to) => self.text_mode_record(&to, &body, now_ms),
            None => self.pdu_mode_record(len, &body, now_ms),
        };
        let record = match record {
            Ok(r) => r,
            Err(code) => {
                let e = self.cms(code);
                return self.final_result(Vec::new(), &e, out);
            }
        };
        if !self.registered {
            let e = self.cms(331);
            return self.final_result(Vec::new(), &e, out);
        }
        self.sends_total += 1;
        out.push(Out::Delay(self.faults.send_latency));
        let nth = self.faults.cms_error_on_send == Some(self.sends_total);
        let random = self.faults.cms_error_rate > 0.0 && self.rng.f64() < self.faults.cms_error_rate;
        if nth || random {
            self.count("(send failed)");
            let e = self.cms(self.faults.cms_error);
            return self.final_result(Vec::new(), &e, out);
        }
        let mr = self.next_mr;
        self.next_mr = self.next_mr.wrapping_add(1);
        let record = SentRecord { mr, ..record };
        if record.status_report_requested && self.faults.auto_report {
            out.push(Out::Schedule(
                self.faults.report_delay,
                Event::StatusReport { message_ref: mr, recipient: record.to.clone(), status: 0 },
            ));
        }
        self.sent.push(record);
        self.final_result(vec![format!("+CMGS: {mr}")], "OK", out);
    }

    pub(super) fn pdu_mode_record(&self, len: usize, body: &[u8], now_ms: u64) -> Result<SentRecord, u16> {
        let hex: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if tpdu_len(&hex) != Some(len) {
            return Err(304);
        }
        let Ok(decoded) = pdu::decode(&hex, true) else {
            return Err(304);
        };
        let pdu::Message::Submit(s) = decoded.message else {
            return Err(304);
        };
        Ok(SentRecord {
            mr: 0,
            to: s.recipient.to_string(),
            text: s.text,
            encoding: s.encoding.as_str(),
            concat: s.concat,
            status_report_requested: s.status_report_requested,
            pdu: hex.to_ascii_uppercase(),
            at: now_ms,
        })
    }

    pub(super) fn text_mode_record(&self, to: &str, body: &[u8], now_ms: u64) -> Result<SentRecord, u16> {
        let text = String::from_utf8_lossy(body).trim_end_matches(['\r', '\n']).to_string();
        let parts = pdu::encode_submit(to, &text, &pdu::SubmitOptions::default()).map_err(|_| 305u16)?;
        match parts.as_slice() {
            [one] => Ok(SentRecord {
                mr: 0,
                to: to.to_string(),
                encoding: pdu::decode(&one.hex, true)
                    .ok()
                    .and_then(|d| match d.message {
                        pdu::Message::Submit(s) => Some(s.encoding.as_str()),
                        _ => None,
                    })
                    .unwrap_or("gsm7"),
                text,
                concat: None,
                status_report_requested: false,
                pdu: one.hex.clone(),
                at: now_ms,
            }),
            _ => Err(305),
        }
    }

    pub(super) fn list(&mut self, kind: Kind) -> Reply {
        if let Some(e) = self.sim_ready_cms() {
            return e;
        }
        let arg = match &kind {
            Kind::Set(a) => a.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let stat = if self.cmgf == 1 {
            match unquote(&arg).to_ascii_uppercase().as_str() {
                "" | "REC UNREAD" => Some(Some(Stat::RecUnread)),
                "REC READ" => Some(Some(Stat::RecRead)),
                "STO UNSENT" => Some(Some(Stat::StoUnsent)),
                "STO SENT" => Some(Some(Stat::StoSent)),
                "ALL" => Some(None),
                _ => None,
            }
        } else {
            match arg.trim() {
                "" | "0" => Some(Some(Stat::RecUnread)),
                "1" => Some(Some(Stat::RecRead)),
                "2" => Some(Some(Stat::StoUnsent)),
                "3" => Some(Some(Stat::StoSent)),
                "4" => Some(None),
                _ => None,
            }
        };
        let Some(stat) = stat else {
            return Reply::Error(self.cms(302));
        };
        let mut lines = Vec::new();
        for (i, m) in self.storage.list(stat) {
            if self.cmgf == 1 {
                let (head, text) = text_mode_view(&m.pdu);
                lines.push(format!("+CMGL: {i},\"{}\",{head}", m.stat.text()));
                lines.push(text);
            } else {
                let len = tpdu_len(&m.pdu).unwrap_or(0);
                lines.push(format!("+CMGL: {i},{},,{len}", m.stat.code()));
                lines.push(m.pdu);
            }
        }
        Reply::Ok(lines)
    }

    pub(super) fn read(&mut self, a: &[String]) -> Reply {
        if let Some(e) = self.sim_ready_cms() {
            return e;
        }
        let Some(index) = num_arg(a, 0).and_then(|n| usize::try_from(n).ok()) else {
            return Reply::Error(self.cms(321));
        };
        if !self.storage.valid_index(index) {
            return Reply::Error(self.cms(321));
        }
        match self.storage.read(index) {
            None => Reply::Ok(Vec::new()),
            Some(m) if self.cmgf == 1 => {
                let (head, text) = text_mode_view(&m.pdu);
                Reply::Ok(vec![format!("+CMGR: \"{}\",{head}", m.stat.text()), text])
            }
            Some(m) => {
                let len = tpdu_len(&m.pdu).unwrap_or(0);
                Reply::Ok(vec![format!("+CMGR: {},,{len}", m.stat.code()), m.pdu])
            }
        }
    }

    pub(super) fn delete(&mut self, a: &[String]) -> Reply {
        if let Some(e) = self.sim_ready_cms() {
            return e;
        }
        let flag = num_arg(a, 1).unwrap_or(0);
        if flag > 4 {
            return Reply::Error(self.cms(302));
        }
        if flag > 0 {
            self.storage.delete_by_flag(flag as u8);
            return Reply::Ok(Vec::new());
        }
        match num_arg(a, 0).and_then(|n| usize::try_from(n).ok()) {
            Some(i) if self.storage.delete(i) => Reply::Ok(Vec::new()),
            _ => Reply::Error(self.cms(321)),
        }
    }

    /// Called by the task after every client input: deliveries the network held back while
    /// the store was full go in as soon as a slot is free (+CMTI each).
    pub fn retry_network_queue(&mut self) -> Vec<Out> {
        if self.storage.queued() == 0 || self.storage.used() >= self.storage.capacity() {
            return Vec::new();
        }
        let filled = self.storage.drain_queue();
        filled.into_iter().flat_map(|i| self.cmti(i)).collect()
    }

    pub(super) fn cmti(&mut self, index: usize) -> Vec<Out> {
        if self.hung() || !matches!(self.cnmi.get(1), Some(1..=3)) {
            return Vec::new();
        }
        vec![Out::Bytes(format!("\r\n+CMTI: \"SM\",{index}\r\n").into_bytes())]
    }

    /// A network delivery of PDUs (with SMSC field), as from `inject`. Returns per PDU the
    /// storage index (None: queued in the network or delivered directly with +CMT).
    pub fn deliver(&mut self, pdus: Vec<String>) -> (Vec<Option<usize>>, Vec<Out>) {
        let mut indices = Vec::new();
        let mut out = Vec::new();
        for p in pdus {
            if self.cnmi.get(1) == Some(&2) && !self.hung() {
                let len = tpdu_len(&p).unwrap_or(0);
                out.push(Out::Bytes(format!("\r\n+CMT: ,{len}\r\n{p}\r\n").into_bytes()));
                self.ack_pending = self.csms == 1;
                indices.push(None);
                continue;
            }
            let idx = self.storage.deliver(p);
            if let Some(i) = idx {
                out.extend(self.cmti(i));
            }
            indices.push(idx);
        }
        // Behind a queue, a free slot may be waiting: the network retries right away.
        out.extend(self.retry_network_queue());
        (indices, out)
    }

    /// Builds the inbound PDUs of a text as the network would deliver them.
    pub fn encode_inbound(
        &mut self,
        from: &str,
        text: &str,
        timestamp_unix: i64,
    ) -> Result<Vec<String>, pdu::PduError> {
        let reference = self.next_concat_ref;
        // 8-bit references on the air: cycle through 1..=255.
        self.next_concat_ref = self.next_concat_ref % 255 + 1;
        let ts = pdu::Timestamp::from_unix(timestamp_unix, 0);
        pdu::encode_deliver(from, text, &ts, reference)
    }

    /// A status report from the network; routed as AT+CNMI's `<ds>` says.
    pub fn status_report(
        &mut self,
        message_ref: u8,
        recipient: &str,
        status: u8,
        now_unix: i64,
    ) -> Result<Vec<Out>, pdu::PduError> {
        let sent_at =
            self.sent.iter().rev().find(|r| r.mr == message_ref).map(|r| (r.at / 1000) as i64).unwrap_or(now_unix);
        let scts = pdu::Timestamp::from_unix(sent_at, 0);
        let discharge = pdu::Timestamp::from_unix(now_unix, 0);
        let hex = pdu::encode_status_report(message_ref, recipient, &scts, &discharge, status)?;
        self.count("(status report)");
        Ok(self.route_report(hex))
    }

    /// A report PDU from the network, routed as AT+CNMI's `<ds>` says.
    pub fn route_report(&mut self, hex: String) -> Vec<Out> {
        if self.hung() {
            return Vec::new();
        }
        match self.cnmi.get(3) {
            Some(1) if self.csms == 1 => {
                if self.cds_waiting.is_some() {
                    // One +CDS at a time: the next waits for the ack of this one.
                    self.cds_queue.push_back(hex);
                    return Vec::new();
                }
                self.send_cds(hex, 0)
            }
            Some(1) => {
                let len = tpdu_len(&hex).unwrap_or(0);
                vec![Out::Bytes(format!("\r\n+CDS: {len}\r\n{hex}\r\n").into_bytes())]
            }
            Some(2) => match self.storage.deliver(hex) {
                Some(i) => vec![Out::Bytes(format!("\r\n+CDSI: \"SM\",{i}\r\n").into_bytes())],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// `+CDS` under `AT+CSMS=1`: sent, and the network waits `cds_ack_timeout` for the ack.
    fn send_cds(&mut self, hex: String, resends: u32) -> Vec<Out> {
        let len = tpdu_len(&hex).unwrap_or(0);
        let id = self.next_cds_id;
        self.next_cds_id += 1;
        let bytes = format!("\r\n+CDS: {len}\r\n{hex}\r\n").into_bytes();
        self.cds_waiting = Some(CdsWaiting { id, hex, resends });
        vec![Out::Bytes(bytes), Out::Schedule(self.faults.cds_ack_timeout, Event::CdsAckTimeout { id })]
    }

    /// The next queued `+CDS`, if none waits for an ack.
    fn next_cds(&mut self) -> Vec<Out> {
        if self.cds_waiting.is_some() || self.hung() {
            return Vec::new();
        }
        match self.cds_queue.pop_front() {
            Some(hex) => self.send_cds(hex, 0),
            None => Vec::new(),
        }
    }

    /// `AT+CNMA` (`n` 0 or 1: RP-ACK, 2: RP-ERROR).
    pub(super) fn acknowledge(&mut self, n: u8) -> Reply {
        if let Some(w) = self.cds_waiting.take() {
            self.count(if n == 2 { "(report refused by +CNMA=2)" } else { "(report acknowledged)" });
            if self.faults.lose_acks > 0 {
                self.faults.lose_acks -= 1;
                self.count("(ack lost)");
                self.after_reply.push(Out::Schedule(self.faults.cds_ack_timeout, Event::Redeliver { hex: w.hex }));
            }
            let next = self.next_cds();
            self.after_reply.extend(next);
            Reply::Ok(Vec::new())
        } else if std::mem::take(&mut self.ack_pending) {
            Reply::Ok(Vec::new())
        } else {
            self.count("(unexpected +CNMA)");
            Reply::Error(self.cms(340))
        }
    }

    /// The network's wait for the ack of `+CDS` `id` ran out: it resends the report, and after
    /// `cds_resends` resends the modem stores it (`+CDSI`) instead.
    pub fn cds_ack_timeout(&mut self, id: u64) -> Vec<Out> {
        let Some(w) = self.cds_waiting.take_if(|w| w.id == id) else {
            return Vec::new(); // acknowledged in time
        };
        if self.hung() {
            return Vec::new();
        }
        let mut out = if w.resends < self.faults.cds_resends {
            self.count("(report resent)");
            self.send_cds(w.hex, w.resends + 1)
        } else {
            self.count("(report stored after no ack)");
            match self.storage.deliver(w.hex) {
                Some(i) => vec![Out::Bytes(format!("\r\n+CDSI: \"SM\",{i}\r\n").into_bytes())],
                None => Vec::new(),
            }
        };
        out.extend(self.next_cds());
        out
    }

    /// The recipient of the newest sent message with this reference.
    pub fn recipient_of(&self, message_ref: u8) -> Option<String> {
        self.sent.iter().rev().find(|r| r.mr == message_ref).map(|r| r.to.clone())
    }
}
