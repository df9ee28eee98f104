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

use crate::shared::Shared;
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
    redis: Option<String>,
    shared: std::sync::OnceLock<Shared>,
}

impl Manager {
    /// The manager of `acme`'s certificates, stored under `storage`.
    pub fn new(
        acme: Acme,
        storage: PathBuf,
        redis: Option<String>,
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
            redis,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Runs until the process ends: one task per certificate.
    pub async fn run(self: Arc<Self>) {
        if let Some(url) = &self.redis {
            match Shared::connect(url, self.store.folder()).await {
                Ok(shared) => {
                    let lookup = shared.clone();
                    self.certificates
                        .challenges()
                        .set_remote(Arc::new(move |token: String| {
                            let lookup = lookup.clone();
                            Box::pin(async move { lookup.token(&token).await })
                        }));
                    let _ = self.shared.set(shared);
                    tracing::info!(
                        event = "acme_shared",
                        "ACME account and certificates shared through Redis"
                    );
                }
                Err(e) => {
                    tracing::error!(event = "acme_shared_failed", error = %e, "Redis unreachable: this host orders its own certificates")
                }
            }
        }
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
            if let Some(shared) = self.shared.get() {
                // Another host may have ordered it already; else take the lock or wait.
                if let Some(v) = self
                    .adopt_shared(shared, &first, &names, current.as_ref())
                    .await
                {
                    current = Some(v);
                    failures = 0;
                    continue;
                }
                if !shared.lock(&first).await {
                    tracing::info!(event = "acme_order_elsewhere", certificate = %first, "another host is ordering this certificate; waiting for it");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            }
            let reason = if current.is_some() {
                "renewal"
            } else {
                "issuance"
            };
            tracing::info!(event = "acme_order_started", certificate = %first, names = ?names, reason, challenge = self.acme.challenge.name(), "ordering a certificate");
            let result = self.attempt(&first, &names).await;
            if let Some(shared) = self.shared.get() {
                if result.is_ok() {
                    if let Some((chain, key)) = self.store.certificate(&first) {
                        if let Err(e) = shared.save_certificate(&first, &chain, &key).await {
                            tracing::warn!(event = "acme_share_failed", certificate = %first, error = %e, "the new certificate could not be shared");
                        }
                    }
                }
                shared.unlock(&first).await;
            }
            match result {
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

    /// Serves the certificate another host shared for `names`, when it is newer than
    /// `current` (and stores it here too).
    async fn adopt_shared(
        &self,
        shared: &Shared,
        first: &str,
        names: &[String],
        current: Option<&Validity>,
    ) -> Option<Validity> {
        let (chain, key) = shared.certificate(first).await?;
        let v = validity::of_pem(&chain)?;
        if current.is_some_and(|c| c.not_after >= v.not_after) || !same_names(names, &v.names) {
            return None;
        }
        if v.renew_at() <= SystemTime::now() {
            return None;
        }
        self.install(first, &chain, &key).ok()?;
        if let Err(e) = self.store.save_certificate(first, &chain, &key) {
            tracing::warn!(event = "acme_store_failed", certificate = %first, error = %e, "the shared certificate could not be stored here");
        }
        tracing::info!(event = "acme_certificate_shared", certificate = %first, days_left = v.days_left(SystemTime::now()).round(), "certificate ordered by another host, served here");
        (self.days_left)(first, v.days_left(SystemTime::now()));
        Some(v)
    }

    /// Serves the stored certificate of `names`, if there is a usable one for them.
    fn install_stored(&self, first: &str, names: &[String]) -> Option<Validity> {
        let (chain, key) = self.store.certificate(first)?;
        let v = validity::of_pem(&chain)?;
        if !same_names(names, &v.names) {
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
                *slot = Some(
                    crate::account::account(&self.acme, &self.store, self.shared.get()).await?,
                );
            }
            slot.clone().ok_or("no account")?
        };
        let issued = match crate::order::order(
            &account,
            names,
            self.acme.challenge,
            self.certificates.challenges(),
            self.shared.get(),
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

/// Whether a certificate for `has` serves exactly the configured `names`.
fn same_names(names: &[String], has: &[String]) -> bool {
    let mut wanted: Vec<&String> = names.iter().collect();
    wanted.sort();
    let mut got: Vec<&String> = has.iter().collect();
    got.sort();
    wanted == got
}
