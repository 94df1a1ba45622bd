//! The server's own database (`flowc-server.db` in the `--db` folder): API
//! keys, kept as SHA-256 hashes only, and the audit of control actions.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// The server database's file name inside the `--db` folder.
pub const FILE: &str = "flowc-server.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,        -- SHA-256 of the key, hex; the key itself is never kept
    read_only INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
-- Who did what, when: every control action, allowed or refused.
CREATE TABLE IF NOT EXISTS audit (
    at TEXT NOT NULL,
    key TEXT NOT NULL,
    action TEXT NOT NULL,
    execution TEXT,
    status INTEGER NOT NULL           -- the HTTP status answered
);
";

/// A key as the server knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub read_only: bool,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A control action as the audit keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audited {
    pub at: DateTime<Utc>,
    /// The name of the key that asked.
    pub key: String,
    pub action: String,
    pub execution: Option<String>,
    /// The HTTP status it was answered.
    pub status: u16,
}

/// The keys and the audit of one `--db` folder.
pub struct Keys {
    conn: Connection,
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without leaking where two hashes first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Keys {
    /// Opens (or makes) the server database of `folder`.
    pub fn open(folder: &Path) -> Result<Keys, String> {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot make the folder {}: {e}", folder.display()))?;
        let path: PathBuf = folder.join(FILE);
        let conn = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Keys { conn })
    }

    /// Makes a key named `name` and returns it: the only time it is seen.
    pub fn create(&self, name: &str, read_only: bool) -> Result<String, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("a key needs a name (--name ci, --name dashboard)".into());
        }
        let mut raw = [0u8; 24];
        getrandom::getrandom(&mut raw).map_err(|e| format!("cannot draw a key: {e}"))?;
        let key = format!("flowc_{}", hex(&raw));
        let added = self.conn.execute(
            "INSERT INTO keys (name, hash, read_only, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
            params![name, hex(&hash(&key)), read_only, crate::store::time(Utc::now())],
        );
        match added {
            Ok(1) => Ok(key),
            Ok(_) => Err(format!(
                "there is already a key named \"{name}\": revoke it first (`flowc keys revoke {name}`) or choose another name"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn list(&self) -> Result<Vec<Key>, String> {
        let mut q = self
            .conn
            .prepare("SELECT name, read_only, created_at, revoked_at FROM keys ORDER BY created_at, name")
            .map_err(|e| e.to_string())?;
        let rows = q
            .query_map([], |r| {
                Ok(Key {
                    name: r.get(0)?,
                    read_only: r.get(1)?,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    /// Revokes the key `name`; false when there is no such key in use.
    pub fn revoke(&self, name: &str) -> Result<bool, String> {
        self.conn
            .execute(
                "UPDATE keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, crate::store::time(Utc::now())],
            )
            .map(|n| n == 1)
            .map_err(|e| e.to_string())
    }

    /// The key in use whose hash is that of `presented`: every key's hash
    /// is compared, each in constant time.
    pub fn find(&self, presented: &str) -> Result<Option<Key>, String> {
        let wanted = hash(presented);
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT name, hash, read_only, created_at FROM keys WHERE revoked_at IS NULL",
            )
            .map_err(|e| e.to_string())?;
        let mut rows = q.query([]).map_err(|e| e.to_string())?;
        let mut found = None;
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let stored: String = r.get(1).map_err(|e| e.to_string())?;
            if same(stored.as_bytes(), hex(&wanted).as_bytes()) {
                found = Some(Key {
                    name: r.get(0).map_err(|e| e.to_string())?,
                    read_only: r.get(2).map_err(|e| e.to_string())?,
                    created_at: r.get(3).map_err(|e| e.to_string())?,
                    revoked_at: None,
                });
            }
        }
        Ok(found)
    }

    /// Writes a control action to the audit.
    pub fn audit(&self, key: &str, action: &str, execution: Option<&str>, status: u16) {
        let written = self.conn.execute(
            "INSERT INTO audit (at, key, action, execution, status) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                crate::store::time(Utc::now()),
                key,
                action,
                execution,
                status
            ],
        );
        if let Err(e) = written {
            tracing::error!(error = %e, "the audit could not be written");
        }
    }

    /// The audit, oldest first.
    pub fn audit_rows(&self) -> Result<Vec<Audited>, String> {
        let mut q = self
            .conn
            .prepare("SELECT at, key, action, execution, status FROM audit ORDER BY rowid")
            .map_err(|e| e.to_string())?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        rows.map(|r| {
            let (at, key, action, execution, status) = r.map_err(|e| e.to_string())?;
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|e| e.to_string())?
                .with_timezone(&Utc);
            Ok(Audited {
                at,
                key,
                action,
                execution,
                status,
            })
        })
        .collect()
    }

    /// Whether any key exists (a server without keys says how to make one).
    pub fn any(&self) -> Result<bool, String> {
        self.conn
            .query_row(
                "SELECT 1 FROM keys WHERE revoked_at IS NULL LIMIT 1",
                [],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_its_hash_only_until_revoked() {
        let dir = std::env::temp_dir().join(format!("flowc-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = Keys::open(&dir).unwrap();
        let key = keys.create("ci", true).unwrap();
        assert!(key.starts_with("flowc_") && key.len() == 6 + 48);
        let stored: String = keys
            .conn
            .query_row("SELECT hash FROM keys", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(&key[6..]), "only the hash is kept");
        assert!(keys
            .create("ci", false)
            .unwrap_err()
            .contains("already a key named"));
        let found = keys.find(&key).unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.read_only), ("ci", true));
        assert_eq!(keys.find("flowc_00").unwrap(), None);
        assert!(keys.revoke("ci").unwrap());
        assert!(!keys.revoke("ci").unwrap());
        assert_eq!(keys.find(&key).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
