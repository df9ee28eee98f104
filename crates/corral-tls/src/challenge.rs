//! What corral answers while an ACME CA checks that it serves a name: the key
//! authorization of each pending HTTP-01 token (read by the plain listeners), and the
//! self-signed `acme-tls/1` certificate of each name under a TLS-ALPN-01 check (read at the
//! handshake). Readers take a snapshot through an `ArcSwap`; writers (the ACME task, a few
//! times per order) copy the small map under a mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

/// The path prefix of HTTP-01 challenges (RFC 8555 section 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Another place to look for an HTTP-01 token this host did not set (a peer sharing the
/// ACME work through Redis placed it there).
pub type RemoteLookup = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// The pending challenges.
#[derive(Default)]
pub struct Challenges {
    http: ArcSwap<HashMap<String, String>>,
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    writer: Mutex<()>,
    remote: ArcSwap<Option<RemoteLookup>>,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenges")
            .field("http01", &self.http.load().len())
            .field("tls_alpn01", &self.alpn.load().len())
            .finish()
    }
}

impl Challenges {
    /// The key authorization to answer for HTTP-01 `token`, if this host set it.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http.load().get(token).cloned()
    }

    /// Looks `token` up in the shared store, for a token a peer set.
    pub fn remote(&self) -> Option<RemoteLookup> {
        self.remote.load().as_ref().clone()
    }

    /// Tokens this host does not know are looked up with `lookup` from now on.
    pub fn set_remote(&self, lookup: RemoteLookup) {
        self.remote.store(Arc::new(Some(lookup)));
    }

    /// Answers `token` with `key_authorization` until [`Challenges::remove_http01`].
    pub fn add_http01(&self, token: &str, key_authorization: &str) {
        self.edit_http(|m| {
            m.insert(token.to_string(), key_authorization.to_string());
        });
    }

    /// Stops answering `token`.
    pub fn remove_http01(&self, token: &str) {
        self.edit_http(|m| {
            m.remove(token);
        });
    }

    /// The `acme-tls/1` certificate for `name`, if a TLS-ALPN-01 check of it is pending.
    pub fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.load().get(name).cloned()
    }

    /// Serves `key` to `acme-tls/1` handshakes for `name`.
    pub fn add_tls_alpn01(&self, name: &str, key: Arc<CertifiedKey>) {
        let _guard = self.writer.lock();
        let mut map = HashMap::clone(&self.alpn.load());
        map.insert(name.to_string(), key);
        self.alpn.store(Arc::new(map));
    }

    /// Stops serving the `acme-tls/1` certificate of `name`.
    pub fn remove_tls_alpn01(&self, name: &str) {
        let _guard = self.writer.lock();
        let mut map = HashMap::clone(&self.alpn.load());
        map.remove(name);
        self.alpn.store(Arc::new(map));
    }

    fn edit_http(&self, edit: impl FnOnce(&mut HashMap<String, String>)) {
        let _guard = self.writer.lock();
        let mut map = HashMap::clone(&self.http.load());
        edit(&mut map);
        self.http.store(Arc::new(map));
    }
}
