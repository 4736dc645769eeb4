//! The SIM message store: listing (`+CMGL`), reading (`+CMGR`), switching stores, and handing out
//! each stored message once while it waits for the consumer to delete it.

use super::*;

impl Driver {
    pub(super) fn note_storage(&self, lines: &[String]) {
        if let Some((_, used, total)) = profile::parse_cpms_query(lines) {
            self.status.send_modify(|s| s.storage = Some(Storage { used, total }));
        }
    }

    /// The receive store of the profile's +CPMS (first quoted value), e.g. "SM".
    pub(super) fn read_mem(&self) -> String {
        let args = self.profile.cpms.split_once('=').map_or("", |(_, a)| a);
        fields(args).first().map_or_else(|| "SM".to_string(), |f| f.as_str().to_string())
    }

    /// List everything stored and hand out what is not pending yet.
    pub(super) async fn drain(&mut self, c: &AtClient) -> Step<()> {
        let mem = self.read_mem();
        let lines = match self.at_with(c, "AT+CMGL=4", self.cfg.command_timeout * 3).await? {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(modem = %self.cfg.name, error = %e, "listing stored messages failed");
                return Ok(());
            }
        };
        let mut it = lines.iter().peekable();
        let mut listed = 0usize;
        while let Some(line) = it.next() {
            let Some(f) = response_fields(line, "+CMGL") else {
                continue;
            };
            let (Some(index), Some(stat)) = (f.first().and_then(|x| x.as_u32()), f.get(1).and_then(|x| x.as_u32()))
            else {
                tracing::warn!(modem = %self.cfg.name, line = %line, "unreadable +CMGL line");
                continue;
            };
            let Some(pdu) = it.next_if(|l| !l.starts_with('+')) else {
                continue;
            };
            listed += 1;
            if stat == 2 || stat == 3 {
                continue; // stored outgoing messages (not ours to hand out)
            }
            self.hand_out(&mem, index, pdu);
        }
        tracing::debug!(modem = %self.cfg.name, listed, pending = self.pending.len(), "storage listed");
        Ok(())
    }

    pub(super) fn hand_out(&mut self, mem: &str, index: u32, pdu: &str) {
        let key = (mem.to_string(), index);
        if self.pending.get(&key).map(String::as_str) == Some(pdu) {
            return;
        }
        let ev = match tpdu_type(pdu) {
            Some(2) => InboundEvent::StatusReport { pdu_hex: pdu.to_string(), stored: Some(key.clone()) },
            // A deliver, and also anything unreadable in a received slot: the consumer stores it
            // raw with the decode error, so a broken PDU is kept, not left to fill the SIM.
            other => {
                if other != Some(0) {
                    tracing::debug!(modem = %self.cfg.name, mem, index, mti = ?other, "received slot holds an unexpected PDU; handed out to be kept raw");
                }
                InboundEvent::Stored { mem: mem.to_string(), index, pdu_hex: pdu.to_string() }
            }
        };
        self.pending.insert(key, pdu.to_string());
        self.outbox.push_back(ev);
    }

    /// Read one stored message (`+CMTI`/`+CDSI`), switching the read store if it is another one.
    pub(super) async fn read_stored(&mut self, c: &AtClient, mem: &str, index: u32) -> Step<()> {
        let lines = self.in_store(c, mem, &format!("AT+CMGR={index}")).await?;
        let lines = match lines {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(modem = %self.cfg.name, mem, index, error = %e, "reading a stored message failed; the next drain retries");
                return Ok(());
            }
        };
        let mut it = lines.iter();
        while let Some(line) = it.next() {
            if response_fields(line, "+CMGR").is_some()
                && let Some(pdu) = it.next()
            {
                self.hand_out(mem, index, pdu);
            }
        }
        Ok(())
    }

    /// Run `cmd` with `mem` as the read/delete store, switching there and back when it is not ours.
    pub(super) async fn in_store(&mut self, c: &AtClient, mem: &str, cmd: &str) -> Step<Result<Vec<String>, AtError>> {
        let ours = self.read_mem();
        if mem == ours {
            return self.at(c, cmd).await;
        }
        if let Err(e) = self.at(c, &format!("AT+CPMS=\"{mem}\"")).await? {
            return Ok(Err(e));
        }
        let result = self.at(c, cmd).await?;
        if let Err(e) = self.at(c, &format!("AT+CPMS=\"{ours}\"")).await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "switching back to the receive store failed; re-init");
            return Err(Exit::Reinit("could not restore the message store".into()));
        }
        Ok(result)
    }
}

/// TP-MTI of a PDU that starts with the SMSC field: 0 deliver, 1 submit, 2 status report.
fn tpdu_type(pdu_hex: &str) -> Option<u8> {
    let smsc_len = usize::from(u8::from_str_radix(pdu_hex.get(0..2)?, 16).ok()?);
    let at = 2 + smsc_len * 2;
    let first = u8::from_str_radix(pdu_hex.get(at..at + 2)?, 16).ok()?;
    Some(first & 0x03)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::driver::tests::{DELIVER, REPORT};

    #[test]
    fn tpdu_type_table() {
        assert_eq!(tpdu_type(DELIVER), Some(0));
        assert_eq!(tpdu_type(REPORT), Some(2));
        assert_eq!(tpdu_type("0011000B91"), Some(1));
        assert_eq!(tpdu_type("07911326"), None);
        assert_eq!(tpdu_type("ZZ"), None);
        assert_eq!(tpdu_type(""), None);
    }
}
