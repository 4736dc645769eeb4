//! Acknowledging what the modem routed to us directly (`+CDS` status reports, and a `+CMT` should a
//! modem send one) with `AT+CNMA`, when `AT+CSMS=1` is in force.
//!
//! 3GPP TS 27.005 §3.4.4: with service 1 the TE must acknowledge every `+CMT`/`+CDS`; the ME sends
//! no further one before that, and without an ack in time it answers the network with an error
//! (the network resends the report later) and switches routing to the TE off (`+CNMI` mt=ds=0).
//!
//! The consumer judges each directly delivered PDU ([`Ack`]) once it is committed and synced (or
//! found unusable) and tells the driver through [`ModemHandle::acknowledge`]; the driver owes an
//! `AT+CNMA` only for PDUs that came while service 1 was in force, so the consumer need not know.
//!
//! Decision (lines per message): a ready ack is held up to [`ACK_HOLD`] and, when a send comes in
//! that time, goes out on the send's own line (`AT+CNMA;+CMGS=<len>`; V.250 §5.2.1 allows several
//! extended commands on one line, and the modem stops at the first error, so reaching the `> ` prompt
//! proves the ack was taken; a modem that refuses the joined line but takes the ack alone gets its
//! acks alone from then on, see [`Acks::no_joining`]). While messages go out back to back, each
//! report then costs no line of its own. Otherwise the ack goes out alone after the hold, well inside
//! the network's wait (24.011 TR2M, 12 to 20 s). A negative ack (`AT+CNMA=2`, RP-ERROR: the PDU cannot be used, so the network
//! should not resend it) always goes out alone, at once.

use super::*;

/// How long a positive ack waits for a send to ride on.
pub(super) const ACK_HOLD: Duration = Duration::from_secs(1);
/// More unacknowledged direct deliveries than this mean the count is off (a confused modem); the
/// surplus is not tracked.
const MAX_OWED: u32 = 64;

/// What the consumer made of a PDU the modem delivered directly (`+CDS`, `+CMT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed and synced: acknowledge it (RP-ACK).
    Stored,
    /// Not a PDU we can ever use (does not decode, wrong kind): refuse it (RP-ERROR) so the network
    /// does not resend the same bytes.
    Unusable,
}

#[derive(Debug, Default)]
pub(super) struct Acks {
    /// `AT+CSMS=1` and a `+CNMI` with ds=1 are in force on this session.
    pub required: bool,
    /// Handed to the consumer, not judged yet.
    owed: u32,
    /// Judged, waiting to go out.
    ready: VecDeque<Ack>,
    /// When the ready ones go out on their own line.
    pub due: Option<Instant>,
    /// A `+CDS`/`+CMT` header came without its PDU line: it was not acknowledged, so the modem may
    /// have switched routing off; the next health check sends the `+CNMI` again.
    pub rearm: bool,
    /// The modem refused `AT+CNMA;+CMGS=<n>` and then took the `AT+CNMA` alone: it does not run the
    /// two on one line, so acks go alone for the rest of the session.
    pub no_joining: bool,
}

impl Acks {
    /// A PDU was delivered directly and handed out.
    pub fn delivered(&mut self) {
        if self.required {
            self.owed = (self.owed + 1).min(MAX_OWED);
        }
    }

    /// The consumer's verdict. Returns false when no ack was owed (service 0, storage routing, or a
    /// new session since).
    pub fn judged(&mut self, ack: Ack) -> bool {
        if self.owed == 0 {
            return false;
        }
        self.owed -= 1;
        let now = Instant::now();
        match ack {
            Ack::Unusable => {
                self.ready.push_back(ack);
                self.due = Some(now);
            }
            Ack::Stored => {
                self.ready.push_back(ack);
                self.due = Some(self.due.unwrap_or(now + ACK_HOLD));
            }
        }
        true
    }

    /// The command to put before a `+CMGS` on its line, if a positive ack is first in line.
    pub fn take_for_send(&mut self) -> Option<&'static str> {
        if self.no_joining || self.ready.front() != Some(&Ack::Stored) {
            return None;
        }
        self.ready.pop_front();
        if self.ready.is_empty() {
            self.due = None;
        }
        Some("+CNMA")
    }

    fn next(&mut self) -> Option<Ack> {
        let ack = self.ready.pop_front();
        if self.ready.is_empty() {
            self.due = None;
        }
        ack
    }
}

impl Driver {
    /// Send every ready ack on its own line.
    pub(super) async fn flush_acks(&mut self, c: &AtClient) -> Step<()> {
        while let Some(ack) = self.acks.next() {
            self.ack_line(c, ack).await?;
        }
        Ok(())
    }

    /// One `AT+CNMA` (or `AT+CNMA=2`); refusals are logged, never fatal. True when the modem took it.
    pub(super) async fn ack_line(&mut self, c: &AtClient, ack: Ack) -> Step<bool> {
        let cmd = match ack {
            Ack::Stored => "AT+CNMA",
            Ack::Unusable => "AT+CNMA=2",
        };
        match self.at(c, cmd).await? {
            Ok(_) => return Ok(true),
            Err(AtError::Cms(340)) => {
                // The modem stopped waiting (its timer ran out, or it restarted): the network resends
                // the report, which is then recorded again without effect.
                tracing::info!(modem = %self.cfg.name, command = cmd, "the modem expected no acknowledgement (+CMS ERROR: 340); a resent report is recorded once");
            }
            Err(e) if ack == Ack::Unusable => {
                // A modem without negative acks: a positive one at least stops the resends.
                tracing::info!(modem = %self.cfg.name, error = %e, "AT+CNMA=2 refused; acknowledging the unusable PDU positively");
                if let Err(e) = self.at(c, "AT+CNMA").await? {
                    tracing::warn!(modem = %self.cfg.name, error = %e, "AT+CNMA refused");
                }
            }
            Err(e) => tracing::warn!(modem = %self.cfg.name, error = %e, "AT+CNMA refused"),
        }
        Ok(false)
    }

    /// After init: status reports direct (`AT+CSMS=1`, then the profile's ds=1 `+CNMI`), or the
    /// profile's storage routing when the family has no direct variant or the modem refuses either.
    pub(super) async fn route_indications(&mut self, c: &AtClient) -> Step<()> {
        self.acks = Acks::default();
        if let Some(direct) = self.profile.cnmi_direct {
            match self.at(c, "AT+CSMS=1").await? {
                Ok(lines) if csms_mt_supported(&lines) => match self.at(c, direct).await? {
                    Ok(_) => {
                        self.acks.required = true;
                        tracing::info!(modem = %self.cfg.name, "status reports come directly (+CDS) and are acknowledged with AT+CNMA once stored");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::info!(modem = %self.cfg.name, command = direct, error = %e, "direct status reports refused; they stay stored on the modem");
                        // Back to phase 2, so nothing the modem still routes to us waits for an ack.
                        let _ = self.at(c, "AT+CSMS=0").await?;
                    }
                },
                Ok(lines) => {
                    tracing::info!(modem = %self.cfg.name, answer = ?lines, "AT+CSMS=1 does not offer mobile-terminated SMS; status reports stay stored on the modem");
                    let _ = self.at(c, "AT+CSMS=0").await?;
                }
                Err(e) => {
                    tracing::info!(modem = %self.cfg.name, error = %e, "AT+CSMS=1 refused (phase 2 modem); status reports stay stored on the modem");
                }
            }
        }
        if let Err(e) = self.at(c, self.profile.cnmi).await? {
            tracing::warn!(modem = %self.cfg.name, command = self.profile.cnmi, error = %e, "CNMI refused; trying without status reports");
            if let Err(e) = self.at(c, "AT+CNMI=2,1,0,0,0").await? {
                return Err(Exit::Failed(format!("the modem refused new-message indications (AT+CNMI): {e}")));
            }
        }
        Ok(())
    }

    /// Health check: after an unacknowledged `+CDS` the modem may have set mt=ds=0; set them again.
    pub(super) async fn rearm_indications(&mut self, c: &AtClient) -> Step<()> {
        if !std::mem::take(&mut self.acks.rearm) {
            return Ok(());
        }
        let cmd = self.profile.cnmi_direct.filter(|_| self.acks.required).unwrap_or(self.profile.cnmi);
        if let Err(e) = self.at(c, cmd).await? {
            tracing::warn!(modem = %self.cfg.name, command = cmd, error = %e, "setting new-message indications again failed");
        }
        Ok(())
    }
}

/// `+CSMS: <mt>,<mo>,<bm>` (set form): whether mobile-terminated SMS is supported under the new
/// service. A bare OK (some modems) counts as support: the `+CNMI` that follows tells.
pub(super) fn csms_mt_supported(lines: &[String]) -> bool {
    match lines.iter().find_map(|l| response_fields(l, "+CSMS")) {
        Some(f) => f.first().and_then(|x| x.as_u32()) == Some(1),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_owed_only_under_service_1_and_ride_on_a_send() {
        let mut a = Acks::default();
        a.delivered();
        assert!(!a.judged(Ack::Stored), "service 0: nothing owed");
        a.required = true;
        a.delivered();
        assert!(a.judged(Ack::Stored));
        assert!(!a.judged(Ack::Stored), "judged twice, owed once");
        assert!(a.due.is_some());
        assert_eq!(a.take_for_send(), Some("+CNMA"));
        assert_eq!((a.take_for_send(), a.due), (None, None));
        a.delivered();
        assert!(a.judged(Ack::Unusable));
        assert_eq!(a.take_for_send(), None, "a negative ack never rides on a send");
        assert_eq!(a.next(), Some(Ack::Unusable));
        for _ in 0..1000 {
            a.delivered();
        }
        assert_eq!(a.owed, MAX_OWED);
    }

    #[test]
    fn csms_answers() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(csms_mt_supported(&l(&["+CSMS: 1,1,1"])));
        assert!(!csms_mt_supported(&l(&["+CSMS: 0,1,1"])));
        assert!(!csms_mt_supported(&l(&["+CSMS: x"])));
        assert!(csms_mt_supported(&l(&[])));
    }
}
