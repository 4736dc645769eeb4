//! Modem → inbox. Each PDU the driver hands over is decoded as far as it goes, stored and
//! committed, and only then deleted from the modem (the driver never deletes on its own).
//! A PDU that does not decode is stored raw with its error, never dropped. Status reports
//! update the matching outbox part.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::modem::driver::{Ack, InboundEvent, ModemHandle};
use crate::pdu::{self, Message};
use crate::phone::mask_number;
use crate::shutdown::ShutdownSignal;
use crate::store::{NewInboxPart, PartStored, Store, now_ms};

/// Consumes one modem's inbound events.
pub struct ModemReceiver {
    pub modem_name: String,
    pub modem: ModemHandle,
    pub store: Store,
    /// Names of the configured forwarders: each stored message gets one delivery row per name.
    pub forwarders: Vec<String>,
    pub concat_timeout: Duration,
    /// Woken when a message is complete (the forwarders wait on it).
    pub wake_forward: Arc<Notify>,
    /// `smshub_messages_received_total`.
    pub metrics: crate::metrics::Metrics,
}

/// How often a status report that matches no sent part is tried again, and the pause between: a
/// report can arrive before the sender has committed the `+CMGS` answer it belongs to. 4 × 500 ms
/// stays far inside the network's wait for a `+CNMA` (12 to 20 s).
const UNMATCHED_REPORT_TRIES: u32 = 4;
const UNMATCHED_REPORT_WAIT: Duration = Duration::from_millis(500);

/// WAP push ports (WAP-230 / WDP port registry): 2948 connectionless push, 2949 secure push.
pub const WAP_PUSH_PORTS: [u16; 2] = [2948, 2949];

/// The WSP well-known content type `application/vnd.wap.mms-message` (0x3E) as a short
/// integer (high bit set), WAP-230 Appendix A, table 40.
const WSP_CONTENT_TYPE_MMS: u8 = 0xBE;
const MMS_CONTENT_TYPE: &[u8] = b"application/vnd.wap.mms-message";

/// What a port-addressed 8-bit message is, as the `encoding` of its inbox row: `mms` (a WAP
/// push MMS notification), `wap_push` (another WAP push, or a later part of a concatenated
/// one), `binary` (any other application port). `None`: text for a person.
///
/// Decision: these kinds live in the `encoding` column rather than a new one, because for such
/// a message there is no alphabet to record and the column is what every reader already
/// consults to know how to read the body; the body itself stays empty (the raw PDU is kept).
pub fn binary_kind(encoding: pdu::Encoding, ports: Option<pdu::AppPorts>, data: &[u8]) -> Option<&'static str> {
    let ports = ports?;
    if encoding != pdu::Encoding::EightBit {
        return None;
    }
    if !WAP_PUSH_PORTS.contains(&ports.destination) {
        return Some(crate::store::CONTENT_BINARY);
    }
    Some(if is_mms_push(data) { crate::store::CONTENT_MMS } else { crate::store::CONTENT_WAP_PUSH })
}

/// Whether `data` is a connectionless WSP Push PDU (WAP-230 8.2.4.1: TID, PDU type 0x06,
/// HeadersLen as uintvar, then the content type) whose content type is the MMS one, as a
/// well-known short integer, a text string, or either behind a value length (8.4.2.24).
fn is_mms_push(data: &[u8]) -> bool {
    let (Some(&_tid), Some(&0x06)) = (data.first(), data.get(1)) else { return false };
    // HeadersLen: a uintvar of at most 5 octets (8.1.2); its value is not needed here.
    let Some(len_octets) = data.get(2..).and_then(|rest| rest.iter().take(5).position(|b| b & 0x80 == 0)) else {
        return false;
    };
    let mut ct = data.get(3 + len_octets..).unwrap_or(&[]);
    // Content-general-form: Value-length (a short length 0..=30) then the media type.
    if let Some((&first, rest)) = ct.split_first()
        && first <= 30
    {
        ct = rest;
    }
    ct.first() == Some(&WSP_CONTENT_TYPE_MMS) || ct.starts_with(MMS_CONTENT_TYPE)
}

/// Decodes a stored PDU into what the inbox keeps. Pure.
pub fn decode_part(modem: &str, pdu_hex: &str) -> NewInboxPart {
    let mut part = NewInboxPart { modem: modem.to_string(), pdu: pdu_hex.to_string(), ..Default::default() };
    match pdu::decode(pdu_hex, true) {
        Ok(decoded) => match decoded.message {
            Message::Deliver(d) => {
                part.sender = Some(d.sender.to_string());
                part.sender_ton = Some(match d.sender.kind {
                    pdu::AddressKind::International => 1,
                    pdu::AddressKind::National => 2,
                    pdu::AddressKind::Alphanumeric => 5,
                    pdu::AddressKind::Other(toa) => (toa >> 4) & 0x07,
                });
                part.concat = d.concat.map(|c| (c.reference, c.total, c.seq));
                match binary_kind(d.encoding, d.ports, &d.data) {
                    Some(kind) => {
                        part.text = Some(String::new());
                        part.encoding = Some(kind.to_string());
                    }
                    None => {
                        part.text = Some(d.text);
                        part.encoding = Some(d.encoding.as_str().to_string());
                    }
                }
                part.sent_at = Some(d.timestamp.to_rfc3339());
            }
            Message::Submit(_) => part.decode_error = Some("an SMS-SUBMIT found in the received messages".into()),
            Message::StatusReport(_) => {
                part.decode_error = Some("a status report found among received messages".into())
            }
        },
        Err(e) => part.decode_error = Some(e.to_string()),
    }
    part
}

/// The message reference and TP-Status of a status report PDU (with SMSC field), or why it is
/// not one. Pure; outside input of any shape.
pub fn report_fields(pdu_hex: &str) -> Result<(u8, u8), String> {
    match pdu::decode(pdu_hex, true) {
        Ok(d) => match d.message {
            Message::StatusReport(r) => Ok((r.message_ref, r.status)),
            _ => Err("the PDU is not a status report".into()),
        },
        Err(e) => Err(e.to_string()),
    }
}

impl ModemReceiver {
    /// Runs until shutdown or until the driver's event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<InboundEvent>, mut shutdown: ShutdownSignal) {
        let mut sweep =
            tokio::time::interval(Duration::from_secs(15).min(self.concat_timeout.max(Duration::from_secs(1))));
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                event = events.recv() => match event {
                    Some(e) => self.handle(e, &shutdown).await,
                    None => break,
                },
                _ = sweep.tick() => self.release_stale().await,
            }
        }
        tracing::debug!(modem = %self.modem_name, "receiver stopped");
    }

    async fn release_stale(&self) {
        let older_than = crate::deadline::ms_before(now_ms(), self.concat_timeout);
        let forwarders = self.forwarders.clone();
        match self.store.call(move |db| db.release_stale_parts(older_than, &forwarders)).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(modem = %self.modem_name, messages = ids.len(), "released multipart messages with missing parts (flagged incomplete)");
                for _ in &ids {
                    self.metrics.received(&self.modem_name);
                }
                self.wake_forward.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(modem = %self.modem_name, error = %e, "releasing stale parts failed"),
        }
    }

    async fn handle(&self, event: InboundEvent, shutdown: &ShutdownSignal) {
        match event {
            InboundEvent::Stored { mem, index, pdu_hex } => {
                let slot = format!("{mem}:{index}");
                if !self.store_until_stored(&pdu_hex, Some(&slot), shutdown).await {
                    return;
                }
                match self.modem.delete(&mem, index).await {
                    Ok(()) => {
                        let (modem, slot2) = (self.modem_name.clone(), slot.clone());
                        if let Err(e) = self.store.call(move |db| db.inbound_slot_freed(&modem, &slot2)).await {
                            // A later PDU in this slot still counts as new if its bytes differ;
                            // only the very same bytes there would be taken for a re-read.
                            tracing::warn!(modem = %self.modem_name, slot, error = %e, "could not record a deleted slot");
                        }
                    }
                    // Safe to leave: a re-read of the same PDU in the same slot is a duplicate.
                    Err(e) => {
                        tracing::warn!(modem = %self.modem_name, mem, index, error = %e, "could not delete a stored message from the modem")
                    }
                }
            }
            InboundEvent::Direct { pdu_hex } => {
                // Not on the modem: this copy is the only one, so it is never given up while running.
                // Stored means synced (store_inbound_part syncs): only then may the modem let go of it.
                if self.store_until_stored(&pdu_hex, None, shutdown).await {
                    self.modem.acknowledge(Ack::Stored).await;
                } else {
                    tracing::error!(modem = %self.modem_name, "stopping with a directly delivered SMS not stored (+CMT); not acknowledged, so the network resends it");
                }
            }
            InboundEvent::StatusReport { pdu_hex, stored: None } => {
                // Delivered directly (+CDS): acknowledged only once it is recorded and synced; a
                // failure leaves it unacknowledged and the network resends it.
                if let Some(ack) = self.status_report(&pdu_hex, true).await {
                    self.modem.acknowledge(ack).await;
                }
            }
            InboundEvent::StatusReport { pdu_hex, stored: Some((mem, index)) } => {
                self.status_report(&pdu_hex, false).await;
                if let Err(e) = self.modem.delete(&mem, index).await {
                    tracing::warn!(modem = %self.modem_name, mem, index, error = %e, "could not delete a status report from the modem");
                }
            }
        }
    }

    /// Stores one PDU, retrying with backoff while the database refuses (a full disk, a lock):
    /// the driver does not hand the same stored message out again while it awaits deletion, and
    /// a `+CMT` message exists nowhere else. Gives up only when shutdown is asked for.
    async fn store_until_stored(&self, pdu_hex: &str, slot: Option<&str>, shutdown: &ShutdownSignal) -> bool {
        let mut attempt = 0u32;
        loop {
            if self.store_part(pdu_hex, slot).await {
                return true;
            }
            if shutdown.is_triggered() {
                return false;
            }
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(crate::retry::backoff(attempt, Duration::from_secs(1), Duration::from_secs(30))).await;
        }
    }

    /// Stores one PDU; true when it is safely in the database (new or a duplicate).
    async fn store_part(&self, pdu_hex: &str, slot: Option<&str>) -> bool {
        let part = NewInboxPart { slot: slot.map(str::to_string), ..decode_part(&self.modem_name, pdu_hex) };
        let sender = part.sender.clone().unwrap_or_default();
        let undecodable = part.decode_error.clone();
        let forwarders = self.forwarders.clone();
        match self.store.call(move |db| db.store_inbound_part(&part, &forwarders)).await {
            Ok(stored) => {
                if let Some(err) = undecodable {
                    tracing::warn!(modem = %self.modem_name, error = %err, "stored an undecodable PDU raw");
                }
                match stored {
                    PartStored::Message(id) => {
                        tracing::info!(modem = %self.modem_name, inbox_id = id, from = %mask_number(&sender), message_id = crate::logging::message_ids::INBOX_RECEIVED, "SMS received");
                        self.metrics.received(&self.modem_name);
                        self.wake_forward.notify_one();
                    }
                    PartStored::Waiting => {
                        tracing::debug!(modem = %self.modem_name, "part stored; waiting for the others")
                    }
                    PartStored::Duplicate => tracing::debug!(modem = %self.modem_name, "PDU already stored"),
                }
                true
            }
            Err(e) => {
                tracing::error!(modem = %self.modem_name, error = %e, "storing a received SMS failed; retrying (it stays on the modem meanwhile)");
                false
            }
        }
    }

    /// Records one status report. `direct`: it came as `+CDS` and is synced before this returns.
    /// Returns the acknowledgement it deserves: `Stored` once recorded (or matching no message of
    /// ours: nothing to keep), `Unusable` when it is not a status report at all, `None` when the
    /// store failed (not acknowledged: the network resends it).
    async fn status_report(&self, pdu_hex: &str, direct: bool) -> Option<Ack> {
        let (mr, status) = match report_fields(pdu_hex) {
            Ok(f) => f,
            Err(why) => {
                // `why` names the field, never the digits of an address.
                tracing::warn!(modem = %self.modem_name, octets = pdu_hex.len() / 2, reason = %why, "unusable status report; ignored");
                return Some(Ack::Unusable);
            }
        };
        let mut attempt = 0;
        loop {
            let modem = self.modem_name.clone();
            let recorded = self
                .store
                .call(move |db| {
                    if direct {
                        db.record_status_report_synced(&modem, mr, status)
                    } else {
                        db.record_status_report(&modem, mr, status)
                    }
                })
                .await;
            match recorded {
                Ok(Some(id)) => {
                    tracing::info!(modem = %self.modem_name, outbox_id = id, status, direct, "delivery report");
                    return Some(Ack::Stored);
                }
                // A report can overtake the sender's commit of the `+CMGS` answer it belongs to: the
                // modem may write `+CDS` right behind `+CMGS: <mr>` (a busy modem holds both). The
                // sender commits within milliseconds, so an unmatched report is tried again a few times.
                Ok(None) if attempt < UNMATCHED_REPORT_TRIES => {
                    attempt += 1;
                    tokio::time::sleep(UNMATCHED_REPORT_WAIT).await;
                }
                Ok(None) => {
                    tracing::debug!(modem = %self.modem_name, mr, "delivery report for an unknown message reference");
                    return Some(Ack::Stored);
                }
                Err(e) => {
                    tracing::error!(modem = %self.modem_name, error = %e, "recording a delivery report failed");
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_deliver_pdu_becomes_an_inbox_part() {
        let p = decode_part("main", "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37");
        assert_eq!(p.text.as_deref(), Some("hellohello"));
        assert_eq!(p.sender.as_deref(), Some("27838890001"));
        assert_eq!(p.encoding.as_deref(), Some("gsm7"));
        assert!(p.decode_error.is_none());
    }

    #[test]
    fn an_mms_notification_is_stored_as_mms_without_text() {
        let p = decode_part("main", &crate::testbed::pdus::mms_notification_pdu());
        assert_eq!(p.decode_error, None);
        assert_eq!(p.encoding.as_deref(), Some("mms"));
        assert_eq!(p.text.as_deref(), Some(""));
        assert_eq!(p.sender.as_deref(), Some("+358401234567"));
    }

    #[test]
    fn port_addressed_8bit_data_is_classified_and_text_is_left_alone() {
        use pdu::{AppPorts, Encoding};
        let wap = Some(AppPorts { destination: 2948, origin: 9200 });
        let push = |ct: &[u8]| [&[0x01, 0x06, 0x81, 0x00][..], ct].concat(); // a 2-octet uintvar HeadersLen
        assert_eq!(binary_kind(Encoding::EightBit, wap, &push(&[0xBE])), Some("mms"));
        assert_eq!(binary_kind(Encoding::EightBit, wap, &push(b"application/vnd.wap.mms-message\0")), Some("mms"));
        assert_eq!(binary_kind(Encoding::EightBit, wap, &push(&[0x02, 0xBE, 0x81])), Some("mms"), "general form");
        assert_eq!(binary_kind(Encoding::EightBit, wap, &push(&[0xAE])), Some("wap_push"), "SI, not MMS");
        assert_eq!(binary_kind(Encoding::EightBit, wap, &[0x01]), Some("wap_push"), "too short: not MMS");
        assert_eq!(binary_kind(Encoding::EightBit, wap, &[0x01, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), Some("wap_push"));
        let other = Some(AppPorts { destination: 5505, origin: 0 });
        assert_eq!(binary_kind(Encoding::EightBit, other, &[1, 2, 3]), Some("binary"));
        assert_eq!(binary_kind(Encoding::EightBit, None, b"latin-1 text"), None);
        assert_eq!(binary_kind(Encoding::Gsm7, wap, &[]), None, "port-addressed text stays text");
    }

    #[test]
    fn a_malformed_port_ie_is_a_decode_error() {
        // The MMS PDU with the port IE length changed from 4 to 3: the IE is malformed.
        let good = crate::testbed::pdus::mms_notification_pdu();
        let bad = good.replacen("0605040B84", "0605030B84", 1);
        assert_ne!(good, bad);
        let p = decode_part("main", &bad);
        assert!(p.decode_error.as_deref().is_some_and(|e| e.contains("application port")), "{p:?}");
    }

    #[test]
    fn status_report_fields_and_hostile_report_pdus() {
        let good = "0006D60B911326880736F4111011719551401110117195714000";
        assert_eq!(report_fields(good), Ok((0xD6, 0)));
        let deliver = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37";
        let cases = [
            ("", "empty"),
            ("0006D", "odd length"),
            ("ZZ06D6", "not hex"),
            (&good[..20], "truncated"),
            (deliver, "another kind of PDU"),
            ("FF", "an SMSC length past the end"),
        ];
        for (pdu, what) in cases {
            let err = report_fields(pdu).expect_err(what);
            assert!(!err.contains("1326880736"), "{what}: the error must not show the number: {err}");
        }
        let huge = "00".repeat(100_000);
        assert!(report_fields(&huge).is_err(), "100 000 zero octets are no report");
    }

    #[test]
    fn a_malformed_pdu_is_kept_with_its_error() {
        let p = decode_part("main", "07917283010010F5040BC872");
        assert!(p.decode_error.is_some());
        assert_eq!(p.pdu, "07917283010010F5040BC872");
        assert!(p.text.is_none());
    }
}
