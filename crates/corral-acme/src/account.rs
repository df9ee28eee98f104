//! The ACME account: made once per storage (and CA), its credentials stored, reused by
//! every order and every restart.

use corral_config::Acme;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};

use crate::store::Store;

/// The account of `settings` at its CA: the stored one, or a new one (then stored).
pub async fn account(
    settings: &Acme,
    store: &Store,
    shared: Option<&crate::shared::Shared>,
) -> Result<Account, String> {
    let builder = || match &settings.directory_ca {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let from_shared = match shared {
        Some(s) => s.account().await,
        None => None,
    };
    if let Some(json) = from_shared.or_else(|| store.account()) {
        match serde_json::from_slice::<AccountCredentials>(&json) {
            Ok(credentials) => {
                return builder()
                    .map_err(|e| format!("HTTP client: {e}"))?
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| format!("the directory {}: {e}", settings.directory));
            }
            Err(e) => tracing::warn!(
                event = "acme_account_unreadable",
                error = %e,
                "the stored ACME account cannot be read; making a new one"
            ),
        }
    }
    // One host makes the shared account; the others wait and take it.
    if let Some(shared) = shared {
        if !shared.lock("account").await {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            return Err("another host is making the shared ACME account".to_string());
        }
    }
    let made = create(settings, store, shared).await;
    if let Some(shared) = shared {
        shared.unlock("account").await;
    }
    made
}

/// Makes a new account and stores it (and shares it).
async fn create(
    settings: &Acme,
    store: &Store,
    shared: Option<&crate::shared::Shared>,
) -> Result<Account, String> {
    let builder = || match &settings.directory_ca {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let contact: Vec<String> = settings
        .email
        .iter()
        .map(|e| format!("mailto:{e}"))
        .collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = settings
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, credentials) = builder()
        .map_err(|e| format!("HTTP client: {e}"))?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| format!("creating the account at {}: {e}", settings.directory))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| format!("account credentials: {e}"))?;
    store
        .save_account(&json)
        .map_err(|e| format!("storing the account: {e}"))?;
    if let Some(shared) = shared {
        shared.save_account(&json).await?;
    }
    tracing::info!(event = "acme_account_created", directory = %settings.directory, id = %account.id(), "ACME account created");
    Ok(account)
}
