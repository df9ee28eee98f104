//! One order, start to end: the authorizations' challenges set up (in [`Challenges`], which
//! the listeners answer from) and taken down again whatever happens, the order finalized
//! with a fresh key, the chain fetched. The protocol itself is instant-acme's.

use std::sync::Arc;
use std::time::Duration;

use corral_config::AcmeChallenge;
use corral_tls::Challenges;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A new certificate: its PEM chain and key.
pub struct Issued {
    /// The chain, the certificate first.
    pub chain: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// How long the CA gets to check the challenges, then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(500))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// Orders a certificate for `names`, answering `kind` challenges through `challenges`.
pub async fn order(
    account: &Account,
    names: &[String],
    kind: AcmeChallenge,
    challenges: &Arc<Challenges>,
    shared: Option<&crate::shared::Shared>,
) -> Result<Issued, String> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut set_up = SetUp {
        challenges: challenges.clone(),
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let wanted = match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(next) = authorizations.next().await {
        let mut authz = next.map_err(|e| format!("authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization is {other:?}")),
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(wanted.clone())
            .ok_or_else(|| format!("the CA offers no {} challenge for {name}", kind.name()))?;
        let authorization = challenge.key_authorization();
        match kind {
            AcmeChallenge::Http01 => {
                challenges.add_http01(&challenge.token, authorization.as_str());
                if let Some(shared) = shared {
                    shared
                        .put_token(&challenge.token, authorization.as_str())
                        .await?;
                }
                set_up.tokens.push(challenge.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let key = alpn_certificate(&name, authorization.digest().as_ref())?;
                challenges.add_tls_alpn01(&name, key);
                set_up.names.push(name.clone());
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge of {name}: {e}"))?;
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("waiting for the CA's checks: {e}"))?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map_or_else(String::new, |p| format!(": {p}"));
        return Err(format!("the order is {status:?} after the checks{why}"));
    }
    drop(set_up);
    let key = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("fetching the certificate: {e}"))?;
    Ok(Issued { chain, key })
}

/// The challenges this order set up, taken down when it ends (on every path).
struct SetUp {
    challenges: Arc<Challenges>,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for SetUp {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove_http01(token);
        }
        for name in &self.names {
            self.challenges.remove_tls_alpn01(name);
        }
    }
}

/// The self-signed certificate a TLS-ALPN-01 check of `name` expects: the name, and the
/// SHA-256 of the key authorization in the critical `acmeIdentifier` extension (RFC 8737).
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let fail = |e: rcgen::Error| format!("tls-alpn-01 certificate for {name}: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its consistency check parses the certificate with
    // webpki, which refuses the critical extension the check needs.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("tls-alpn-01 certificate for {name}: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}
