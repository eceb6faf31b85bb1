//! Who may see the console. On a loopback listener with no token, anyone who can reach
//! the port (the local machine) may. Anywhere else a console token is required
//! (`run --console-token-env VAR`): a login form trades it for an HttpOnly,
//! SameSite=Strict session cookie, or scripts send it as a bearer header. A listener
//! off loopback without a token answers 401 to every console page: the metrics and
//! health endpoints stay open, as before the console.
//!
//! Actions are POSTs carrying a CSRF token derived from the session (or, on an open
//! loopback console, from the process): another site's page cannot read it, so it
//! cannot forge the form. Bearer requests carry no ambient credential and need none.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "oql_console";
/// How long a login lasts.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1000;

pub struct Access {
    /// SHA-256 of the console token: compared digest to digest, so the comparison's
    /// time does not follow the token's characters.
    token: Option<[u8; 32]>,
    /// Loopback listener and no token: pages need no login.
    open: bool,
    /// The listener is off loopback and no token was given: pages are refused.
    locked: bool,
    sessions: Mutex<HashMap<String, Instant>>,
    csrf_key: [u8; 32],
}

/// How a request was let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visitor {
    /// The open loopback console.
    Local,
    /// A login session (its id).
    Session(String),
    /// A bearer header: no CSRF token needed.
    Bearer,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality of two digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    pub fn new(token: Option<&str>, loopback: bool) -> Access {
        Access {
            token: token.map(digest),
            open: loopback && token.is_none(),
            locked: !loopback && token.is_none(),
            sessions: Mutex::new(HashMap::new()),
            csrf_key: rand::random(),
        }
    }

    /// Whether a token is asked for (the login form is shown).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Who the request is, or `None` when it must log in.
    pub fn visitor(&self, headers: &HeaderMap) -> Option<Visitor> {
        if self.open {
            return Some(Visitor::Local);
        }
        let token = self.token.as_ref()?;
        if let Some(bearer) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
            return same(&digest(bearer.trim()), token).then_some(Visitor::Bearer);
        }
        let sid = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().expect("sessions lock");
        match sessions.get(&sid) {
            Some(until) if *until > Instant::now() => Some(Visitor::Session(sid)),
            Some(_) => {
                sessions.remove(&sid);
                None
            }
            None => None,
        }
    }

    /// A new session when `token` is the console token.
    pub fn login(&self, token: &str) -> Option<String> {
        let expected = self.token.as_ref()?;
        if !same(&digest(token.trim()), expected) {
            return None;
        }
        let sid = random_hex();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        sessions.retain(|_, until| *until > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(sid.clone(), now + SESSION_LIFE);
        Some(sid)
    }

    pub fn logout(&self, visitor: &Visitor) {
        if let Visitor::Session(sid) = visitor {
            self.sessions.lock().expect("sessions lock").remove(sid);
        }
    }

    /// The CSRF token of a visitor's forms.
    pub fn csrf(&self, visitor: &Visitor) -> String {
        let id = match visitor {
            Visitor::Session(sid) => sid.as_str(),
            Visitor::Local | Visitor::Bearer => "",
        };
        let mut h = Sha256::new();
        h.update(self.csrf_key);
        h.update(id.as_bytes());
        h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether a POST of `visitor` carries the right CSRF token.
    pub fn csrf_ok(&self, visitor: &Visitor, given: &str) -> bool {
        *visitor == Visitor::Bearer || (!given.is_empty() && same(&digest(given), &digest(&self.csrf(visitor))))
    }
}

/// The value of one cookie of the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value of a session.
pub fn session_cookie(sid: &str) -> String {
    format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_LIFE.as_secs())
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_without_a_token_is_open_and_elsewhere_it_is_locked() {
        assert_eq!(Access::new(None, true).visitor(&headers(&[])), Some(Visitor::Local));
        let locked = Access::new(None, false);
        assert!(locked.locked());
        assert_eq!(locked.visitor(&headers(&[("authorization", "Bearer anything")])), None);
    }

    #[test]
    fn a_token_lets_in_by_bearer_or_session_and_nothing_else() {
        let a = Access::new(Some("s3cret-token"), false);
        assert_eq!(a.visitor(&headers(&[])), None);
        assert_eq!(a.visitor(&headers(&[("authorization", "Bearer wrong")])), None);
        assert_eq!(a.visitor(&headers(&[("authorization", "Bearer s3cret-token")])), Some(Visitor::Bearer));
        assert!(a.login("wrong").is_none());
        let sid = a.login("s3cret-token").unwrap();
        let v = a.visitor(&headers(&[("cookie", &format!("other=1; {COOKIE}={sid}"))])).unwrap();
        assert_eq!(v, Visitor::Session(sid.clone()));
        assert_eq!(a.visitor(&headers(&[("cookie", &format!("{COOKIE}=forged"))])), None);
        // The CSRF token is the session's; another session's does not pass.
        let other = a.login("s3cret-token").unwrap();
        assert!(a.csrf_ok(&v, &a.csrf(&v)));
        assert!(!a.csrf_ok(&v, &a.csrf(&Visitor::Session(other))));
        assert!(!a.csrf_ok(&v, ""));
        a.logout(&v);
        assert_eq!(a.visitor(&headers(&[("cookie", &format!("{COOKIE}={sid}"))])), None);
        assert!(session_cookie(&sid).contains("HttpOnly; SameSite=Strict"));
    }
}
