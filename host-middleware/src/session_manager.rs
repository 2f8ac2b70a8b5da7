//! Authority sessions with an idle time and a limit on how many run at once.
//!
//! The card has no clock (`docs/security.md` §3.8): ending a management
//! session after an idle time is the host's job. A [`SessionManager`] opens
//! authority sessions (SCP03), hands them out by [`SessionId`], ends any that
//! has been idle longer than the configured time (default 60 minutes) — by
//! selecting the applet again, which ends the secure channel on the card —
//! and refuses to open more than the configured number at once.
//!
//! Each managed session knows the card session number the card wrote in its
//! audit entries ([`SessionManager::card_session`]), so audit entries can be
//! tied to the host session that caused them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsc_card_model::commands::AuditEvent;
use dmsc_card_model::scp03::SecurityLevel;

use crate::error::HostError;
use crate::governance::{AuditFilter, Governance};
use crate::scp::{open_secure_channel, AuthorityKeySet};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

/// Default idle time after which a session is ended.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Default number of sessions open at once.
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
    /// A session unused for longer than this is ended.
    pub idle_timeout: Duration,
    /// At most this many sessions at once.
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The limit of concurrent sessions is reached.
    #[error("too many authority sessions: at most {limit} at once")]
    TooMany {
        /// The configured limit.
        limit: usize,
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
    /// The card or transport failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Where the manager reads the time (a test can drive it).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct Managed<T: Transport> {
    session: Session<T>,
    authority: String,
    last_used: Instant,
    card_session: Option<u32>,
}

/// Authority sessions with idle expiry and a concurrency limit.
pub struct SessionManager<T: Transport> {
    limits: SessionLimits,
    sessions: BTreeMap<SessionId, Managed<T>>,
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
            sessions: BTreeMap::new(),
            next: 1,
            clock,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Opens an authority session on `transport` (ending idle sessions first).
    pub fn open(
        &mut self,
        transport: T,
        authority: &str,
        keys: &AuthorityKeySet,
        level: SecurityLevel,
    ) -> Result<SessionId, SessionError> {
        self.expire_idle();
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TooMany {
                limit: self.limits.max_sessions,
            });
        }
        let mut session = Session::new(transport);
        open_secure_channel(&mut session, keys, level)?;
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
            },
        );
        Ok(id)
    }

    /// Runs `f` on session `id`; an idle session is ended instead.
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
            self.end(id);
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

    /// The card session number the card records in this session's audit entries.
    pub fn card_session(&self, id: SessionId) -> Option<u32> {
        self.sessions.get(&id).and_then(|m| m.card_session)
    }

    /// The authority of session `id`.
    pub fn authority(&self, id: SessionId) -> Option<&str> {
        self.sessions.get(&id).map(|m| m.authority.as_str())
    }

    /// Ends session `id`: SELECT ends the secure channel on the card. Returns
    /// the transport (for reuse), or `None` if there was no such session.
    pub fn end(&mut self, id: SessionId) -> Option<T> {
        let mut m = self.sessions.remove(&id)?;
        m.session.clear_secure_messaging();
        // A card that is gone has ended the session itself.
        let _ = m.session.select();
        Some(m.session.into_transport())
    }

    /// Ends every session idle longer than the idle time; returns their ids.
    pub fn expire_idle(&mut self) -> Vec<SessionId> {
        let now = (self.clock)();
        let timeout = self.limits.idle_timeout;
        let idle: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_used) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.end(*id);
        }
        idle
    }
}
