//! Authority sessions with an idle time and a limit on how many run at once.
//!
//! The card has no clock (`docs/security.md` §3.8): ending a management
//! session after an idle time is the host's job. These are the 3GPP Security
//! IRP's `maxIdleSessionTime` ([`SessionLimits::idle_timeout`]) and
//! `maxNumberofSecuritySessions` ([`SessionLimits::max_sessions`]).
//!
//! A [`SessionManager`] keeps authority sessions (SCP03), hands them out by
//! [`SessionId`], ends any that has been idle longer than the idle time
//! (default 5 minutes) — by selecting the applet again, which ends the secure
//! channel on the card — and refuses to open more than the configured number
//! at once. Opening is two steps, so that the caller authenticates its own way:
//! [`SessionManager::reserve`] takes a place (before anything is sent), the
//! caller opens the secure channel, and [`SessionManager::adopt`] takes the
//! authenticated session in. [`SessionManager::open`] does all three.
//!
//! # Sessions of other processes
//!
//! Alone, a manager counts only its own sessions. With a [`SlotDir`]
//! ([`SessionManager::with_slots`]) every session also holds one of
//! `max_sessions` lock files of its card, `DIR/<card ID>/slot-<i>.lock`, locked
//! with an advisory lock (`flock(2)`, [`File::try_lock`]) for as long as the
//! session lasts. Processes sharing a card through pcscd and the same
//! directory therefore count each other's sessions, and a process that ends in
//! any way (even killed) frees its slots: the kernel drops its locks. Limits:
//! the count holds only among processes that use the same directory on the
//! same machine (not over NFS, not for other hosts' clients of a network
//! reader), and each process applies its own `max_sessions` (a process with a
//! larger limit may take slots beyond a smaller one).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsc_card_model::commands::AuditEvent;
use dmsc_card_model::scp03::SecurityLevel;

use crate::error::HostError;
use crate::governance::{AuditFilter, Governance};
use crate::session::scp::{open_secure_channel, AuthorityKeySet};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

/// Default idle time after which a session is ended (`maxIdleSessionTime`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default number of sessions open at once (`maxNumberofSecuritySessions`).
pub const DEFAULT_MAX_SESSIONS: usize = 8;

/// A managed session's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", self.0)
    }
}

/// How sessions are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused for longer than this is ended (`maxIdleSessionTime`).
    pub idle_timeout: Duration,
    /// At most this many sessions at once (`maxNumberofSecuritySessions`).
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Why the manager refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The limit of concurrent sessions is reached.
    #[error("too many authority sessions on this card: at most {limit} at once{}", in_dir(.dir))]
    TooMany {
        /// The configured limit.
        limit: usize,
        /// The card's slot directory, when sessions are counted across processes.
        dir: Option<PathBuf>,
    },
    /// The session was ended because it was idle too long.
    #[error("{id} was ended after {idle:?} idle (limit {timeout:?})")]
    Expired {
        /// The session.
        id: SessionId,
        /// How long it had been idle.
        idle: Duration,
        /// The configured idle time.
        timeout: Duration,
    },
    /// No such session (ended, or never opened).
    #[error("{0} does not exist")]
    Unknown(SessionId),
    /// The keys belong to another authority than the one named.
    #[error(
        "the keys of key version 0x{key_version:02X} are those of authority '{actual}', \
         not '{asked}'"
    )]
    WrongAuthority {
        /// The authority named by the caller.
        asked: String,
        /// The key version the card authenticated.
        key_version: u8,
        /// The name the card gives that key set.
        actual: String,
    },
    /// The slot directory could not be used.
    #[error("cannot use the session slot directory {}", .dir.display())]
    Slots {
        /// The directory or lock file.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The card or transport failed.
    #[error("the authority session failed")]
    Host(#[from] HostError),
}

fn in_dir(dir: &Option<PathBuf>) -> String {
    match dir {
        Some(d) => format!(
            " (sessions of every process are counted in {})",
            d.display()
        ),
        None => String::new(),
    }
}

/// Where the manager reads the time (a test can drive it).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Lock files that count sessions across processes (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDir {
    root: PathBuf,
}

/// One held slot: released when dropped, or when the process ends.
#[derive(Debug)]
pub struct SlotLock {
    // Held for its lock; closing it releases the slot.
    _file: File,
    index: usize,
    path: PathBuf,
}

impl SlotLock {
    /// The slot's number (0 to `max_sessions - 1`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SlotDir {
    /// Slots under `root` (one subdirectory per card).
    pub fn new(root: impl Into<PathBuf>) -> SlotDir {
        SlotDir { root: root.into() }
    }

    /// The usual place: `$XDG_RUNTIME_DIR/dmsc/sessions`, else
    /// `<temp dir>/dmsc-sessions`.
    pub fn default_root() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("dmsc").join("sessions"),
            _ => std::env::temp_dir().join("dmsc-sessions"),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The slot directory of one card.
    pub fn card_dir(&self, card_id: &[u8; 16]) -> PathBuf {
        self.root.join(hex::encode_upper(card_id))
    }

    fn slot_file(&self, card_id: &[u8; 16], index: usize) -> Result<(File, PathBuf), SessionError> {
        let dir = self.card_dir(card_id);
        std::fs::create_dir_all(&dir).map_err(|source| SessionError::Slots {
            dir: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("slot-{index}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| SessionError::Slots {
                dir: path.clone(),
                source,
            })?;
        Ok((file, path))
    }

    /// Takes the first free one of `max` slots of the card.
    pub fn acquire(&self, card_id: &[u8; 16], max: usize) -> Result<SlotLock, SessionError> {
        for index in 0..max {
            let (file, path) = self.slot_file(card_id, index)?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(SlotLock {
                        _file: file,
                        index,
                        path,
                    })
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(source)) => {
                    return Err(SessionError::Slots { dir: path, source })
                }
            }
        }
        Err(SessionError::TooMany {
            limit: max,
            dir: Some(self.card_dir(card_id)),
        })
    }

    /// How many of the card's first `max` slots are held now (by any process,
    /// this one included).
    pub fn in_use(&self, card_id: &[u8; 16], max: usize) -> Result<usize, SessionError> {
        let mut held = 0;
        for index in 0..max {
            let path = self.card_dir(card_id).join(format!("slot-{index}.lock"));
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(SessionError::Slots { dir: path, source }),
            };
            match file.try_lock_shared() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => held += 1,
                Err(TryLockError::Error(source)) => {
                    return Err(SessionError::Slots { dir: path, source })
                }
            }
        }
        Ok(held)
    }
}

/// A place for one session, taken before authenticating
/// ([`SessionManager::reserve`]).
#[derive(Debug)]
pub struct Reservation {
    slot: Option<SlotLock>,
}

impl Reservation {
    /// The cross-process slot held, if sessions are counted across processes.
    pub fn slot(&self) -> Option<&SlotLock> {
        self.slot.as_ref()
    }
}

/// A session the manager ended because it was idle.
pub struct Ended<T: Transport> {
    /// The session.
    pub id: SessionId,
    /// Its authority.
    pub authority: String,
    /// How long it had been idle.
    pub idle: Duration,
    /// The transport, for reuse (the secure channel on the card is over).
    pub transport: T,
}

impl<T: Transport> fmt::Debug for Ended<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ended")
            .field("id", &self.id)
            .field("authority", &self.authority)
            .field("idle", &self.idle)
            .finish()
    }
}

struct Managed<T: Transport> {
    session: Session<T>,
    authority: String,
    last_used: Instant,
    card_session: Option<u32>,
    // Released when the session ends.
    _slot: Option<SlotLock>,
}

/// Authority sessions with idle expiry and a concurrency limit.
pub struct SessionManager<T: Transport> {
    limits: SessionLimits,
    slots: Option<SlotDir>,
    sessions: BTreeMap<SessionId, Managed<T>>,
    /// Sessions [`with`](Self::with) found idle, until [`expire_idle`](Self::expire_idle).
    ended: Vec<Ended<T>>,
    next: u64,
    clock: Clock,
}

impl<T: Transport> SessionManager<T> {
    /// A manager with `limits`, on the system clock.
    pub fn new(limits: SessionLimits) -> Self {
        Self::with_clock(limits, Arc::new(Instant::now))
    }

    /// A manager reading the time from `clock`.
    pub fn with_clock(limits: SessionLimits, clock: Clock) -> Self {
        SessionManager {
            limits,
            slots: None,
            sessions: BTreeMap::new(),
            ended: Vec::new(),
            next: 1,
            clock,
        }
    }

    /// Counts sessions across processes with the lock files under `slots`.
    pub fn with_slots(mut self, slots: SlotDir) -> Self {
        self.slots = Some(slots);
        self
    }

    /// The slot directory, if sessions are counted across processes.
    pub fn slots(&self) -> Option<&SlotDir> {
        self.slots.as_ref()
    }

    /// The limits in force.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Changes the idle time; it applies to open sessions too.
    pub fn set_idle_timeout(&mut self, idle_timeout: Duration) {
        self.limits.idle_timeout = idle_timeout;
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Takes a place for one session on the card `card_id` (ending idle
    /// sessions first): refused when `max_sessions` are open, in this manager
    /// or, with a [`SlotDir`], in any process.
    pub fn reserve(&mut self, card_id: &[u8; 16]) -> Result<Reservation, SessionError> {
        drop(self.expire_idle());
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TooMany {
                limit: self.limits.max_sessions,
                dir: self.slots.as_ref().map(|s| s.card_dir(card_id)),
            });
        }
        let slot = match &self.slots {
            Some(dir) => Some(dir.acquire(card_id, self.limits.max_sessions)?),
            None => None,
        };
        Ok(Reservation { slot })
    }

    /// Takes in `session`, on which the caller opened the secure channel of
    /// `authority`. When the card lets the session read its key sets, the key
    /// set must be `authority`'s; otherwise the session is ended and refused.
    pub fn adopt(
        &mut self,
        reservation: Reservation,
        mut session: Session<T>,
        authority: &str,
        key_version: u8,
    ) -> Result<SessionId, (SessionError, T)> {
        let named = session.authorities().ok().and_then(|list| {
            list.into_iter()
                .find(|e| e.key_version == key_version)
                .map(|e| e.name)
        });
        if let Some(actual) = named.filter(|n| n != authority) {
            let transport = close(session);
            return Err((
                SessionError::WrongAuthority {
                    asked: authority.to_string(),
                    key_version,
                    actual,
                },
                transport,
            ));
        }
        // The card session number of this authentication, from the audit log
        // (authorities may read it by default; without Get it stays unknown).
        let card_session = session
            .audit(&AuditFilter {
                event: Some(AuditEvent::AuthSuccess),
                principal: Some(authority.to_string()),
                from: None,
            })
            .ok()
            .and_then(|e| e.last().map(|e| e.session));
        let id = SessionId(self.next);
        self.next += 1;
        self.sessions.insert(
            id,
            Managed {
                session,
                authority: authority.to_string(),
                last_used: (self.clock)(),
                card_session,
                _slot: reservation.slot,
            },
        );
        Ok(id)
    }

    /// Opens an authority session on `transport`: [`reserve`](Self::reserve),
    /// SCP03 with `keys`, [`adopt`](Self::adopt).
    pub fn open(
        &mut self,
        transport: T,
        authority: &str,
        keys: &AuthorityKeySet,
        level: SecurityLevel,
    ) -> Result<SessionId, SessionError> {
        let mut session = Session::new(transport);
        let card_id = session.select()?.card_id;
        let reservation = self.reserve(&card_id)?;
        let info = open_secure_channel(&mut session, keys, level)?;
        self.adopt(reservation, session, authority, info.key_version)
            .map_err(|(e, _)| e)
    }

    /// Runs `f` on session `id`; an idle session is ended instead (its
    /// transport comes back from the next [`expire_idle`](Self::expire_idle)).
    pub fn with<R>(
        &mut self,
        id: SessionId,
        f: impl FnOnce(&mut Session<T>) -> Result<R, HostError>,
    ) -> Result<R, SessionError> {
        let now = (self.clock)();
        let timeout = self.limits.idle_timeout;
        let idle = {
            let m = self.sessions.get(&id).ok_or(SessionError::Unknown(id))?;
            now.saturating_duration_since(m.last_used)
        };
        if idle > timeout {
            if let Some(ended) = self.end_idle(id, idle) {
                self.ended.push(ended);
            }
            return Err(SessionError::Expired { id, idle, timeout });
        }
        let m = self
            .sessions
            .get_mut(&id)
            .ok_or(SessionError::Unknown(id))?;
        let result = f(&mut m.session);
        m.last_used = (self.clock)();
        Ok(result?)
    }

    /// How long session `id` has been unused.
    pub fn idle(&self, id: SessionId) -> Option<Duration> {
        let now = (self.clock)();
        self.sessions
            .get(&id)
            .map(|m| now.saturating_duration_since(m.last_used))
    }

    /// The card session number the card records in this session's audit entries.
    pub fn card_session(&self, id: SessionId) -> Option<u32> {
        self.sessions.get(&id).and_then(|m| m.card_session)
    }

    /// The authority of session `id`.
    pub fn authority(&self, id: SessionId) -> Option<&str> {
        self.sessions.get(&id).map(|m| m.authority.as_str())
    }

    /// Ends session `id`: SELECT ends the secure channel on the card, and its
    /// slot is freed. Returns the transport (for reuse), or `None` if there was
    /// no such session.
    pub fn end(&mut self, id: SessionId) -> Option<T> {
        let m = self.sessions.remove(&id)?;
        Some(close(m.session))
    }

    fn end_idle(&mut self, id: SessionId, idle: Duration) -> Option<Ended<T>> {
        let authority = self.authority(id)?.to_string();
        let transport = self.end(id)?;
        Some(Ended {
            id,
            authority,
            idle,
            transport,
        })
    }

    /// Ends every session idle longer than the idle time, and returns them
    /// with those [`with`](Self::with) ended since the last call.
    pub fn expire_idle(&mut self) -> Vec<Ended<T>> {
        let now = (self.clock)();
        let timeout = self.limits.idle_timeout;
        let idle: Vec<(SessionId, Duration)> = self
            .sessions
            .iter()
            .map(|(id, m)| (*id, now.saturating_duration_since(m.last_used)))
            .filter(|(_, idle)| *idle > timeout)
            .collect();
        let mut ended = std::mem::take(&mut self.ended);
        for (id, idle) in idle {
            ended.extend(self.end_idle(id, idle));
        }
        ended
    }
}

/// Ends the secure channel (SELECT) and returns the transport.
fn close<T: Transport>(mut session: Session<T>) -> T {
    session.clear_secure_messaging();
    // A card that is gone has ended the session itself.
    let _ = session.select();
    session.into_transport()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: [u8; 16] = [0xC4; 16];

    #[test]
    fn slots_are_counted_across_open_files_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        // Two SlotDirs on one directory stand for two processes: flock locks
        // belong to open files, so they conflict within one process too.
        let a = SlotDir::new(dir.path());
        let b = SlotDir::new(dir.path());
        let first = a.acquire(&CARD, 2).unwrap();
        let second = b.acquire(&CARD, 2).unwrap();
        assert_eq!((first.index(), second.index()), (0, 1));
        assert_eq!(a.in_use(&CARD, 2).unwrap(), 2);
        match b.acquire(&CARD, 2) {
            Err(SessionError::TooMany {
                limit: 2,
                dir: Some(d),
            }) => {
                assert_eq!(d, a.card_dir(&CARD))
            }
            other => panic!("{other:?}"),
        }
        // Another card has its own slots.
        assert!(b.acquire(&[0x11; 16], 2).is_ok());
        // A slot whose holder ends (drops its file, or dies) is free again.
        drop(first);
        assert_eq!(a.in_use(&CARD, 2).unwrap(), 1);
        assert_eq!(b.acquire(&CARD, 2).unwrap().index(), 0);
    }

    #[test]
    fn a_slot_directory_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = SlotDir::new(&file).acquire(&CARD, 1).unwrap_err();
        assert!(matches!(err, SessionError::Slots { .. }), "{err:?}");
        assert!(err.to_string().contains("plain-file"), "{err}");
    }

    #[cfg(feature = "sim")]
    mod with_card {
        use super::*;
        use crate::transport::sim::SimTransport;
        use dmsc_card_model::scp03::StaticKeys;
        use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
        use std::sync::Mutex;
        use zeroize::Zeroizing;

        const KEY: [u8; 16] = [0x40; 16];

        fn card() -> SimTransport<MemoryStore> {
            SimTransport::in_memory(InitParams::with_authorities(vec![AuthorityKeys {
                key_version: 0x30,
                name: "admin".into(),
                enc: Zeroizing::new(KEY.to_vec()),
                mac: Zeroizing::new(KEY.to_vec()),
                dek: Zeroizing::new(KEY.to_vec()),
            }]))
            .unwrap()
        }

        fn keys() -> AuthorityKeySet {
            AuthorityKeySet {
                key_version: 0x30,
                keys: StaticKeys::new(&KEY, &KEY, &KEY).unwrap(),
            }
        }

        fn level() -> SecurityLevel {
            SecurityLevel::new(0x33).unwrap()
        }

        fn manager(
            limits: SessionLimits,
        ) -> (
            SessionManager<SimTransport<MemoryStore>>,
            Arc<Mutex<Instant>>,
        ) {
            let now = Arc::new(Mutex::new(Instant::now()));
            let read = now.clone();
            let m = SessionManager::with_clock(
                limits,
                Arc::new(move || *read.lock().unwrap_or_else(|e| e.into_inner())),
            );
            (m, now)
        }

        #[test]
        fn an_idle_session_ends_and_hands_its_transport_back() {
            let (mut m, now) = manager(SessionLimits::default());
            let id = m.open(card(), "admin", &keys(), level()).unwrap();
            m.with(id, |s| s.failure_limit()).unwrap();
            *now.lock().unwrap() += DEFAULT_IDLE_TIMEOUT;
            assert!(
                m.expire_idle().is_empty(),
                "exactly the idle time is not past it"
            );
            *now.lock().unwrap() += Duration::from_secs(1);
            let ended = m.expire_idle();
            assert_eq!(ended.len(), 1);
            assert_eq!((ended[0].id, ended[0].authority.as_str()), (id, "admin"));
            assert_eq!(ended[0].idle, DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1));
            assert!(m.is_empty());
            // The card ended the secure channel: the audit log is refused in plain.
            let mut plain = Session::new(ended.into_iter().next().unwrap().transport);
            assert!(matches!(
                plain.read_audit_log(None),
                Err(HostError::Card {
                    status: crate::Status::SecurityStatusNotSatisfied,
                    ..
                })
            ));
        }

        #[test]
        fn a_shorter_idle_time_applies_to_open_sessions() {
            let (mut m, now) = manager(SessionLimits::default());
            let id = m.open(card(), "admin", &keys(), level()).unwrap();
            *now.lock().unwrap() += Duration::from_secs(61);
            m.set_idle_timeout(Duration::from_secs(60));
            assert!(matches!(
                m.with(id, |s| s.failure_limit()),
                Err(SessionError::Expired { .. })
            ));
            // The transport of a session `with` ended is handed back once.
            let ended = m.expire_idle();
            assert_eq!(ended.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
            assert!(m.expire_idle().is_empty());
        }

        #[test]
        fn keys_of_another_authority_are_refused_and_the_channel_ended() {
            let (mut m, _) = manager(SessionLimits::default());
            let err = m.open(card(), "ServerB", &keys(), level()).unwrap_err();
            match err {
                SessionError::WrongAuthority {
                    asked,
                    actual,
                    key_version,
                } => {
                    assert_eq!(
                        (asked.as_str(), actual.as_str(), key_version),
                        ("ServerB", "admin", 0x30)
                    )
                }
                other => panic!("{other:?}"),
            }
            assert!(m.is_empty());
        }

        #[test]
        fn the_limit_counts_sessions_of_other_managers_through_slots() {
            let dir = tempfile::tempdir().unwrap();
            let limits = SessionLimits {
                max_sessions: 1,
                ..SessionLimits::default()
            };
            let (m1, _) = manager(limits);
            let (m2, _) = manager(limits);
            let mut m1 = m1.with_slots(SlotDir::new(dir.path()));
            let mut m2 = m2.with_slots(SlotDir::new(dir.path()));
            // Both "processes" talk to the same card: one card ID.
            let mut t = card();
            let card_id = Session::new(&mut t).select().unwrap().card_id;
            let r1 = m1.reserve(&card_id).unwrap();
            assert!(matches!(
                m2.reserve(&card_id),
                Err(SessionError::TooMany {
                    limit: 1,
                    dir: Some(_)
                })
            ));
            // Ending the reservation (or the session holding it) frees the slot.
            drop(r1);
            let r2 = m2.reserve(&card_id).unwrap();
            let mut s = Session::new(t);
            let info = open_secure_channel(&mut s, &keys(), level()).unwrap();
            let id = m2
                .adopt(r2, s, "admin", info.key_version)
                .map_err(|(e, _)| e)
                .unwrap();
            assert!(m1.reserve(&card_id).is_err());
            m2.end(id).unwrap();
            assert!(m1.reserve(&card_id).is_ok());
        }
    }
}
