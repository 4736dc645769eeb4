//! Bringing a freshly opened modem to service: echo, errors, identity, profile, PIN (at most once),
//! registration, PDU mode, storage, indications, SMSC.

use super::*;

impl Driver {
    pub(super) async fn init(&mut self, c: &AtClient) -> Step<()> {
        self.set_state(ModemState::Initializing);
        // A modem just plugged in may swallow the first command; echo may be on.
        let _ = self.at(c, "AT").await?;
        if let Err(e) = self.at(c, "ATE0").await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "ATE0 refused; continuing with echo");
        }
        if let Err(e) = self.at(c, "AT+CMEE=1").await? {
            tracing::warn!(modem = %self.cfg.name, error = %e, "AT+CMEE=1 refused; errors will be plain ERROR");
        }
        let manufacturer = self.at(c, "AT+CGMI").await?.ok().and_then(|l| profile::first_value(&l, "+CGMI"));
        let model = self.at(c, "AT+CGMM").await?.ok().and_then(|l| profile::first_value(&l, "+CGMM"));
        let imei = self.at(c, "AT+CGSN").await?.ok().and_then(|l| profile::first_value(&l, "+CGSN"));
        let kind = match self.cfg.profile {
            ProfileKind::Auto => profile::detect(manufacturer.as_deref().unwrap_or(""), model.as_deref().unwrap_or("")),
            k => k,
        };
        self.profile = kind.profile();
        tracing::info!(modem = %self.cfg.name, ?manufacturer, ?model, profile = ?kind, "modem identified");
        self.status.send_modify(|s| {
            s.identity = Some(Identity { manufacturer, model, imei, imsi_masked: None, profile: kind });
        });
        for extra in self.profile.init_extras {
            if let Err(e) = self.at(c, extra).await? {
                tracing::warn!(modem = %self.cfg.name, command = extra, error = %e, "profile init command refused");
            }
        }

        self.unlock_sim(c).await?;

        let imsi = self.at(c, "AT+CIMI").await?.ok().and_then(|l| profile::first_value(&l, "+CIMI"));
        self.status.send_modify(|s| {
            if let Some(id) = s.identity.as_mut() {
                id.imsi_masked = imsi.map(|i| profile::mask_imsi(&i));
            }
        });

        self.set_state(ModemState::WaitingForRegistration);
        let deadline = crate::deadline::tokio_in(self.cfg.registration_timeout);
        while !self.poll_registration(c).await?.registered() {
            if Instant::now() >= deadline {
                tracing::warn!(modem = %self.cfg.name, "not registered yet; going on (sends wait for registration)");
                self.status.send_modify(|s| s.last_error = Some("not registered to the mobile network".into()));
                break;
            }
            self.idle(Duration::from_secs(1).min(self.cfg.registration_timeout)).await?;
        }

        if let Err(e) = self.at(c, "AT+CMGF=0").await? {
            return Err(Exit::Failed(format!("the modem refused PDU mode (AT+CMGF=0): {e}")));
        }
        match self.at(c, self.profile.cpms).await? {
            Ok(lines) => self.note_storage(&lines),
            Err(e) => {
                return Err(Exit::Failed(format!(
                    "the modem refused the SIM message store ({}): {e}",
                    self.profile.cpms
                )));
            }
        }
        self.route_indications(c).await?;
        let smsc = match self.at(c, "AT+CSCA?").await? {
            Ok(lines) => lines
                .iter()
                .find_map(|l| response_fields(l, "+CSCA"))
                .and_then(|f| f.first().map(|x| x.as_str().to_string()))
                .filter(|s| !s.is_empty()),
            Err(_) => None,
        };
        if smsc.is_none() {
            tracing::warn!(modem = %self.cfg.name, "no SMS service centre (+CSCA) on the SIM");
        }
        self.status.send_modify(|s| {
            if smsc.is_none() {
                s.last_error =
                    Some("no SMS service centre number (AT+CSCA) on the SIM: sending will likely fail".into());
            }
            s.smsc = smsc;
        });

        self.drain(c).await?;
        self.update_ready();
        Ok(())
    }

    pub(super) fn update_ready(&self) {
        let registered = self.status.borrow().registration.is_some_and(|r| r.registered());
        let state = self.state();
        if matches!(
            state,
            ModemState::Ready | ModemState::WaitingForRegistration | ModemState::Initializing | ModemState::Recovering
        ) {
            self.set_state(if registered { ModemState::Ready } else { ModemState::WaitingForRegistration });
        }
    }

    /// `+CPIN?` and, if asked and allowed, the PIN — once.
    pub(super) async fn unlock_sim(&mut self, c: &AtClient) -> Step<()> {
        let mut busy_tries = 0;
        loop {
            let answer = match self.at(c, "AT+CPIN?").await? {
                Ok(lines) => profile::first_value(&lines, "+CPIN").unwrap_or_default(),
                Err(AtError::Cme(CmeError::Code(14))) if busy_tries < 10 => {
                    busy_tries += 1;
                    self.idle(Duration::from_secs(1)).await?;
                    continue;
                }
                Err(AtError::Cme(CmeError::Code(10))) => {
                    return self.sim_locked(c, "no SIM card inserted".into()).await;
                }
                Err(e) => {
                    return self.sim_locked(c, format!("SIM state query failed: {e}")).await;
                }
            };
            match answer.as_str() {
                "READY" => {
                    if self.pin == PinHistory::Unconfirmed {
                        self.pin = PinHistory::Accepted;
                        tracing::info!(modem = %self.cfg.name, "SIM PIN accepted");
                    }
                    return Ok(());
                }
                "SIM PIN" => {
                    let why = match (&self.pin, &self.cfg.pin) {
                        (PinHistory::Rejected(why), _) => Some(why.clone()),
                        (PinHistory::Unconfirmed, _) => {
                            let why = "the SIM still asks for its PIN after the configured PIN was entered; it is not entered again".to_string();
                            self.pin = PinHistory::Rejected(why.clone());
                            Some(why)
                        }
                        (_, None) => Some("the SIM asks for a PIN and none is configured".to_string()),
                        (_, Some(_)) => None,
                    };
                    if let Some(why) = why {
                        return self.sim_locked(c, why).await;
                    }
                    let pin = self.cfg.pin.clone().unwrap_or_default();
                    // Recorded before the write: if we never learn the outcome, it counts as refused.
                    self.pin = PinHistory::Unconfirmed;
                    tracing::info!(modem = %self.cfg.name, "entering the SIM PIN (once)");
                    match self.at(c, &format!("AT+CPIN=\"{pin}\"")).await? {
                        Ok(_) => {
                            // The SIM takes a moment after the PIN; +CPIN? again (SIM busy is retried).
                            self.idle(Duration::from_millis(500)).await?;
                        }
                        Err(e) => {
                            let why = format!(
                                "the SIM refused the configured PIN ({e}); it will not be tried again — fix the PIN in the configuration and restart smshub (too many wrong PINs lock the SIM with its PUK)"
                            );
                            tracing::error!(modem = %self.cfg.name, "{why}");
                            self.pin = PinHistory::Rejected(why.clone());
                            return self.sim_locked(c, why).await;
                        }
                    }
                }
                other if other.contains("PUK") => {
                    return self.sim_locked(c, format!("the SIM needs its PUK ({other}); unlock it in a phone")).await;
                }
                other => {
                    return self.sim_locked(c, format!("the SIM is not ready ({other:?})")).await;
                }
            }
        }
    }

    /// Stay in SimLocked, checking read-only whether someone unlocked the SIM (e.g. in a phone and put
    /// back). Never enters a PIN.
    pub(super) async fn sim_locked(&mut self, c: &AtClient, why: String) -> Step<()> {
        tracing::error!(modem = %self.cfg.name, reason = %why, "SIM locked");
        self.status.send_modify(|s| s.last_error = Some(why.clone()));
        self.set_state(ModemState::SimLocked(why));
        loop {
            self.idle(self.cfg.health_interval).await?;
            if let Ok(lines) = self.at(c, "AT+CPIN?").await?
                && profile::first_value(&lines, "+CPIN").as_deref() == Some("READY")
            {
                tracing::info!(modem = %self.cfg.name, "SIM is ready now");
                self.set_state(ModemState::Initializing);
                return Ok(());
            }
        }
    }

    pub(super) async fn poll_registration(&mut self, c: &AtClient) -> Step<Registration> {
        let mut reg = Registration::default();
        if let Ok(l) = self.at(c, "AT+CREG?").await? {
            reg.cs = profile::registration_stat(&l, "+CREG");
        }
        if let Ok(l) = self.at(c, "AT+CEREG?").await? {
            reg.eps = profile::registration_stat(&l, "+CEREG");
        }
        self.status.send_modify(|s| s.registration = Some(reg));
        Ok(reg)
    }
}
