//! Several hosts sharing one Redis (`[rate_limit_store]`'s): one ACME account, the
//! certificates, a lock so one host at a time orders a certificate, and the HTTP-01 tokens
//! of the host that orders, so any host the CA's check reaches can answer it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a lock is held at most (an order takes seconds; a host that died frees it).
const LOCK_MS: u64 = 300_000;
/// How long a shared HTTP-01 token lives.
const TOKEN_S: u64 = 600;

/// The shared store of one CA's account and certificates.
#[derive(Clone)]
pub struct Shared {
    conn: ConnectionManager,
    prefix: String,
    id: String,
}

impl Shared {
    /// Connects to `url`; keys are under `corral:acme:FOLDER:` (`folder` names the CA).
    pub async fn connect(url: &str, folder: &str) -> Result<Shared, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        Ok(Shared {
            conn,
            prefix: format!("corral:acme:{folder}:"),
            id,
        })
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{}{key}", self.prefix))
            .query_async::<Option<Vec<u8>>>(&mut conn)
            .await
            .ok()
            .flatten()
    }

    async fn set(&self, key: &str, value: &[u8], ttl_s: Option<u64>) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}{key}", self.prefix)).arg(value);
        if let Some(ttl) = ttl_s {
            cmd.arg("EX").arg(ttl);
        }
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("Redis: {e}"))
    }

    /// The shared account's credentials (JSON).
    pub async fn account(&self) -> Option<Vec<u8>> {
        self.get("account").await
    }

    /// Shares the account's credentials.
    pub async fn save_account(&self, json: &[u8]) -> Result<(), String> {
        self.set("account", json, None).await
    }

    /// The shared chain and key of the certificate named `first`.
    pub async fn certificate(&self, first: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let chain = self.get(&format!("cert:{first}:chain")).await?;
        let key = self.get(&format!("cert:{first}:key")).await?;
        Some((chain, key))
    }

    /// Shares a certificate (the key first, as on disk).
    pub async fn save_certificate(
        &self,
        first: &str,
        chain: &[u8],
        key: &[u8],
    ) -> Result<(), String> {
        self.set(&format!("cert:{first}:key"), key, None).await?;
        self.set(&format!("cert:{first}:chain"), chain, None).await
    }

    /// Takes the lock of the certificate `first`; false when another host holds it.
    pub async fn lock(&self, first: &str) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}lock:{first}", self.prefix))
            .arg(&self.id)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_MS)
            .query_async::<Option<String>>(&mut conn)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// Frees the lock of `first` if this host holds it.
    pub async fn unlock(&self, first: &str) {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let _ = script
            .key(format!("{}lock:{first}", self.prefix))
            .arg(&self.id)
            .invoke_async::<i64>(&mut conn)
            .await;
    }

    /// Shares an HTTP-01 token's key authorization for the other hosts to answer.
    pub async fn put_token(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        self.set(
            &format!("http01:{token}"),
            key_authorization.as_bytes(),
            Some(TOKEN_S),
        )
        .await
    }

    /// The key authorization another host shared for `token`.
    pub async fn token(&self, token: &str) -> Option<String> {
        self.get(&format!("http01:{token}"))
            .await
            .and_then(|v| String::from_utf8(v).ok())
    }
}
