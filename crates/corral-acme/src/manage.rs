//! The life of each ACME certificate: served from storage at once when there is one,
//! ordered when it is missing (or names changed), renewed at two thirds of its lifetime;
//! a failed attempt is logged once and retried after a wait that doubles up to an hour,
//! while the certificate in use keeps being served. Days left are reported at every wake
//! (at least hourly) and logged loudly in the last week.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral_config::Acme;
use corral_tls::Certificates;
use instant_acme::Account;
use tokio::sync::Mutex;

use crate::store::Store;
use crate::validity::{self, Validity};

/// Told `(certificate name, days left)` for the metrics.
pub type DaysLeft = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// The longest wait between two looks at a certificate (days left, the loud log).
const LOOK_EVERY: Duration = Duration::from_secs(3600);
/// The longest wait after failures in a row.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Days left under which a certificate that could not be renewed is logged as an error.
const LOUD_DAYS: f64 = 7.0;

/// Every ACME certificate of one config.
pub struct Manager {
    acme: Acme,
    store: Store,
    certificates: Arc<Certificates>,
    days_left: DaysLeft,
    account: Mutex<Option<Account>>,
}

impl Manager {
    /// The manager of `acme`'s certificates, stored under `storage`.
    pub fn new(
        acme: Acme,
        storage: PathBuf,
        certificates: Arc<Certificates>,
        days_left: DaysLeft,
    ) -> Manager {
        let store = Store::new(&storage, &acme.directory);
        Manager {
            acme,
            store,
            certificates,
            days_left,
            account: Mutex::new(None),
        }
    }

    /// Runs until the process ends: one task per certificate.
    pub async fn run(self: Arc<Self>) {
        let mut tasks = tokio::task::JoinSet::new();
        for names in self.acme.domains.clone() {
            let manager = self.clone();
            tasks.spawn(async move { manager.manage(names).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn manage(&self, names: Vec<String>) {
        let first = names[0].clone();
        let mut current = self.install_stored(&first, &names);
        let mut failures: u32 = 0;
        loop {
            let now = SystemTime::now();
            let due = match &current {
                Some(v) if failures == 0 => v.renew_at(),
                Some(_) | None if failures > 0 => now + self.backoff(failures),
                _ => now,
            };
            if let Some(v) = &current {
                self.look(&first, v, now, failures);
            }
            if due > now {
                let wait = due.duration_since(now).unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait.min(LOOK_EVERY)).await;
                if SystemTime::now() < due {
                    continue;
                }
            }
            let reason = if current.is_some() {
                "renewal"
            } else {
                "issuance"
            };
            tracing::info!(event = "acme_order_started", certificate = %first, names = ?names, reason, challenge = self.acme.challenge.name(), "ordering a certificate");
            match self.attempt(&first, &names).await {
                Ok(v) => {
                    tracing::info!(
                        event = "acme_certificate_issued",
                        certificate = %first,
                        days_left = v.days_left(SystemTime::now()).round(),
                        reason,
                        "ACME certificate issued and served to new connections"
                    );
                    current = Some(v);
                    failures = 0;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let retry = self.backoff(failures);
                    tracing::error!(
                        event = "acme_order_failed",
                        certificate = %first,
                        attempt = failures,
                        retry_in_s = retry.as_secs(),
                        error = %error,
                        serving_old = current.is_some(),
                        "ACME order failed; the certificate in use (if any) stays"
                    );
                }
            }
        }
    }

    /// The wait after `failures` failed attempts in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.acme.retry.saturating_mul(factor).min(MAX_RETRY)
    }

    /// Reports the days left of the certificate `first`, loudly when few are left.
    fn look(&self, first: &str, v: &Validity, now: SystemTime, failures: u32) {
        let days = v.days_left(now);
        (self.days_left)(first, days);
        if days < LOUD_DAYS {
            tracing::error!(
                event = "certificate_expiring",
                certificate = %first,
                days_left = days,
                failed_attempts = failures,
                "an ACME certificate expires soon and has not been renewed"
            );
        }
    }

    /// Serves the stored certificate of `names`, if there is a usable one for them.
    fn install_stored(&self, first: &str, names: &[String]) -> Option<Validity> {
        let (chain, key) = self.store.certificate(first)?;
        let v = validity::of_pem(&chain)?;
        let mut wanted: Vec<&String> = names.iter().collect();
        wanted.sort();
        let mut has: Vec<&String> = v.names.iter().collect();
        has.sort();
        if wanted != has {
            tracing::info!(event = "acme_names_changed", certificate = %first, "the stored certificate has other names; ordering a new one");
            return None;
        }
        match self.install(first, &chain, &key) {
            Ok(()) => {
                tracing::info!(event = "certificate_loaded", certificate = %first, file = %self.store.cert_path(first).display(), days_left = v.days_left(SystemTime::now()).round(), "stored ACME certificate served");
                (self.days_left)(first, v.days_left(SystemTime::now()));
                Some(v)
            }
            Err(e) => {
                tracing::warn!(event = "acme_stored_unusable", certificate = %first, error = %e, "the stored certificate cannot be used; ordering a new one");
                None
            }
        }
    }

    fn install(&self, first: &str, chain: &[u8], key: &[u8]) -> Result<(), String> {
        let loaded = corral_tls::from_pem(
            chain,
            key,
            &self.store.cert_path(first),
            &self.store.key_path(first),
        )?;
        self.certificates.store_ordered(first, loaded);
        Ok(())
    }

    /// One order for `names`: stored, then served.
    async fn attempt(&self, first: &str, names: &[String]) -> Result<Validity, String> {
        let account = {
            let mut slot = self.account.lock().await;
            if slot.is_none() {
                *slot = Some(crate::account::account(&self.acme, &self.store).await?);
            }
            slot.clone().ok_or("no account")?
        };
        let issued = match crate::order::order(
            &account,
            names,
            self.acme.challenge,
            self.certificates.challenges(),
        )
        .await
        {
            Ok(issued) => issued,
            Err(e) => {
                // The CA dropped the account (deactivated, or a test CA restarted): the
                // next attempt makes a new one.
                if e.contains("accountDoesNotExist") {
                    *self.account.lock().await = None;
                    self.store.forget_account();
                }
                return Err(e);
            }
        };
        let v = validity::of_pem(issued.chain.as_bytes())
            .ok_or("the CA sent a certificate that cannot be read")?;
        self.install(first, issued.chain.as_bytes(), issued.key.as_bytes())?;
        self.store
            .save_certificate(first, issued.chain.as_bytes(), issued.key.as_bytes())
            .map_err(|e| format!("storing the certificate: {e}"))?;
        (self.days_left)(first, v.days_left(SystemTime::now()));
        Ok(v)
    }
}
