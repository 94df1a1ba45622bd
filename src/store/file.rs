//! The store's file: recognising a flowc store from its header before
//! SQLite opens it, making a new one, connecting with the store's settings,
//! and the lock a running process holds on its campaign.

use std::path::Path;

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    corrupt, parse_time, time, StoreError, APPLICATION_ID, HEARTBEAT_SECONDS, LOCK_STALE_SECONDS,
    OLDEST_UPGRADABLE, SCHEMA, SCHEMA_VERSION,
};
use crate::runtime::journal::Durability;

/// This process's hold on the campaign: a row in `lock`, renewed by a
/// heartbeat thread until released.
pub(super) struct Lock {
    pub(super) token: String,
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Lock {
    pub(super) fn take(
        conn: &mut Connection,
        path: &Path,
        durability: Durability,
    ) -> Result<Lock, StoreError> {
        let pid = i64::from(std::process::id());
        let host = host_name();
        let token = format!("{pid}-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0));
        let now = Utc::now();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT pid, host, heartbeat_at FROM lock WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((other, other_host, beat)) = held {
            let seconds_ago = parse_time(&beat).map_or(i64::MAX, |b| (now - b).num_seconds());
            let gone = other_host == host && (other == pid || !process_alive(other));
            if !gone && seconds_ago < LOCK_STALE_SECONDS {
                return Err(StoreError::Locked {
                    pid: other,
                    host: other_host,
                    seconds_ago: seconds_ago.max(0),
                });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO lock (id, pid, host, token, taken_at, heartbeat_at) VALUES (1, ?1, ?2, ?3, ?4, ?4)",
            params![pid, host, token, time(now)],
        )?;
        tx.commit()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let beat = connect(path, durability)?;
        let beat_token = token.clone();
        let thread = std::thread::Builder::new()
            .name("store-heartbeat".into())
            .spawn(move || {
                let period = std::time::Duration::from_secs(HEARTBEAT_SECONDS);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(period)
                {
                    let _ = beat.execute(
                        "UPDATE lock SET heartbeat_at = ?1 WHERE id = 1 AND token = ?2",
                        params![time(Utc::now()), beat_token],
                    );
                }
                // Released: the row goes, if it is still ours.
                let _ = beat.execute(
                    "DELETE FROM lock WHERE id = 1 AND token = ?1",
                    params![beat_token],
                );
            })
            .map_err(|e| corrupt(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Lock {
            token,
            stop,
            thread: Some(thread),
        })
    }
}

/// What the header of a file at a store's path says, read from the bytes
/// themselves before SQLite opens it (opening may change a file).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Nothing there, or an empty file: a new store.
    Nothing,
    /// A flowc store of this schema.
    Store,
    /// A flowc store of an older schema that a run upgrades in place.
    Older(i64),
}

pub(super) fn recognise(path: &Path) -> Result<Found, StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(StoreError::Corrupt(format!("cannot open it: {e}"))),
    };
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(StoreError::NotAStore("it is a folder".into()));
    }
    let mut header = Vec::with_capacity(100);
    file.by_ref()
        .take(100)
        .read_to_end(&mut header)
        .map_err(|e| StoreError::Corrupt(format!("cannot read it: {e}")))?;
    if header.is_empty() {
        return Ok(Found::Nothing);
    }
    if header.len() < 100 || !header.starts_with(b"SQLite format 3\0") {
        return Err(StoreError::NotAStore("it is not an SQLite database".into()));
    }
    let word = |at: usize| {
        i64::from(u32::from_be_bytes([
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ]))
    };
    if word(68) != APPLICATION_ID {
        return Err(StoreError::NotAStore(
            "an SQLite database without flowc's mark: another program's, or a store of a flowc \
             older than 0.2 (read or finish that one with the flowc that wrote it)"
                .into(),
        ));
    }
    let version = word(60);
    if (OLDEST_UPGRADABLE..SCHEMA_VERSION).contains(&version) {
        return Ok(Found::Older(version));
    }
    if version != SCHEMA_VERSION {
        return Err(StoreError::OtherVersion(format!(
            "the database was written by another version of flowc (store version {version}, this one \
             reads {SCHEMA_VERSION}): read or finish it with the flowc that wrote it, or use another --db"
        )));
    }
    Ok(Found::Store)
}

pub(super) fn connect(path: &Path, durability: Durability) -> Result<Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    // Never creates: a new store is made by `Store::open` alone.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Fold the WAL back into the database every 64 MiB rather than every 4.
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    // The engine only writes attempts and ends of contacts it added first;
    // checking each reference read the contacts' pages of a large campaign
    // from disk on every write (the references stay declared).
    conn.pragma_update(None, "foreign_keys", false)?;
    let synchronous = match durability {
        Durability::BeforeEachDial => "FULL",
        Durability::Batched => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    // 64 MiB of page cache: the indexes of a large campaign stay in memory.
    conn.pragma_update(None, "cache_size", -65536)?;
    Ok(conn)
}

/// Makes a new, empty store at `path` (its folder too): flowc's mark and
/// the schema version go into the header before the switch to WAL, so the
/// file itself carries them from its first commit.
pub(super) fn create(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Corrupt(format!("cannot create its folder {}: {e}", dir.display()))
        })?;
    }
    let conn = Connection::open(path)?;
    // Larger pages: fewer of them for a campaign's rows.
    conn.pragma_update(None, "page_size", 16384)?;
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// This machine's name, for the lock row.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this machine".into())
}

/// Whether a process of this machine is alive (unknown: assumed alive).
pub(super) fn process_alive(pid: i64) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// A path as an SQLite URI's path: the characters a URI gives a meaning
/// to are escaped.
pub(super) fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
