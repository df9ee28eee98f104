//! The storage directory: per ACME directory, the account's credentials and each
//! certificate's chain and key, written whole (a temporary file renamed) and readable by the
//! owner only (0600, the directory 0700).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One directory's part of the storage.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    folder: String,
}

impl Store {
    /// The part of `root` for the CA at `directory` (its host and port name the folder, so
    /// staging and production keep separate accounts).
    pub fn new(root: &Path, directory: &str) -> Store {
        let host = directory
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or("ca");
        let folder: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Store {
            dir: root.join(&folder),
            folder,
        }
    }

    /// The CA's folder name, also the key prefix of the shared store.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// Where the chain of the certificate named `first` is.
    pub fn cert_path(&self, first: &str) -> PathBuf {
        self.dir.join(format!("{first}.crt"))
    }

    /// Where the key of the certificate named `first` is.
    pub fn key_path(&self, first: &str) -> PathBuf {
        self.dir.join(format!("{first}.key"))
    }

    /// The account's credentials (JSON), if stored.
    pub fn account(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join("account.json")).ok()
    }

    /// Stores the account's credentials.
    pub fn save_account(&self, json: &[u8]) -> std::io::Result<()> {
        self.write(&self.dir.join("account.json"), json)
    }

    /// Forgets the account (the CA no longer knows it).
    pub fn forget_account(&self) {
        let _ = std::fs::remove_file(self.dir.join("account.json"));
    }

    /// The stored chain and key of the certificate named `first`.
    pub fn certificate(&self, first: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let chain = std::fs::read(self.cert_path(first)).ok()?;
        let key = std::fs::read(self.key_path(first)).ok()?;
        Some((chain, key))
    }

    /// Stores a certificate's chain and key (the key first: a chain is never left beside
    /// a key that is not its own for long).
    pub fn save_certificate(&self, first: &str, chain: &[u8], key: &[u8]) -> std::io::Result<()> {
        self.write(&self.key_path(first), key)?;
        self.write(&self.cert_path(first), chain)
    }

    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::Store;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_for_the_owner_only_and_each_ca_has_its_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = Store::new(root.path(), "https://127.0.0.1:14000/dir");
        store
            .save_certificate("a.test", b"chain", b"key")
            .expect("save");
        assert_eq!(
            store.certificate("a.test"),
            Some((b"chain".to_vec(), b"key".to_vec()))
        );
        let mode = std::fs::metadata(store.key_path("a.test"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(store
            .cert_path("a.test")
            .starts_with(root.path().join("127.0.0.1_14000")));
    }
}
