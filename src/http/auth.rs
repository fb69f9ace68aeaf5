//! HTTP basic authentication against the web config's bcrypt hashes, the
//! way exporter-toolkit does it.
//!
//! Owns: decoding the `Authorization` header, the bcrypt check and the cache
//! of its results. Must never: run more than one bcrypt at a time (a flood
//! of wrong passwords then costs one core at most, and the cache answers
//! repeats without any), run bcrypt on the async runtime's thread (it
//! takes tens of milliseconds by design), keep a password in memory (the
//! cache is keyed by a SHA-256 of user, hash and password), or answer
//! faster for an unknown user than for a wrong password (an unknown user
//! is checked against a fixed hash, as exporter-toolkit does).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::Engine as _;
use hyper::header::HeaderValue;

/// Results kept, as exporter-toolkit's cache (one random entry goes when
/// it is full).
const CACHE_ENTRIES: usize = 100;

/// bcrypt of "fakepassword", cost 10 (exporter-toolkit's choice): what an
/// unknown user's password is checked against, so timing does not tell whether a user
/// exists.
const FAKE_HASH: &str = "$2y$10$/KYpvDQlqTlzjTxh7btguOyIeRiu9aF3O5oNOU6A2LpQWWC48/wOK";

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// Held while bcrypt runs. An async lock taken before the blocking
    /// task starts: waiting requests wait on the runtime, not in blocking
    /// threads the collectors need.
    bcrypt: tokio::sync::Mutex<()>,
}

impl BasicAuth {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users,
            cache: Mutex::new(HashMap::with_capacity(CACHE_ENTRIES)),
            bcrypt: tokio::sync::Mutex::new(()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the request's `Authorization` header names a user whose
    /// password matches.
    pub async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, pass)) = header.and_then(decode) else {
            return false;
        };
        let known = self.users.get(&user);
        let hash = known.map_or(FAKE_HASH, String::as_str).to_owned();
        let key = cache_key(&user, &hash, &pass);
        let cached = self.cache.lock().ok().and_then(|c| c.get(&key).copied());
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let one_at_a_time = self.bcrypt.lock().await;
                // A burst of one credential waited here together: the first
                // one's result answers the rest.
                let again = self.cache.lock().ok().and_then(|c| c.get(&key).copied());
                if let Some(ok) = again {
                    return ok && known.is_some();
                }
                let verified = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(pass.as_bytes(), &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let ok = known.is_some() && verified;
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() >= CACHE_ENTRIES {
                        if let Some(k) = c.keys().next().copied() {
                            c.remove(&k);
                        }
                    }
                    c.insert(key, ok);
                }
                drop(one_at_a_time);
                ok
            }
        };
        ok && known.is_some()
    }
}

fn cache_key(user: &str, hash: &str, pass: &str) -> [u8; 32] {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    for part in [user, hash, pass] {
        d.update(&(part.len() as u64).to_le_bytes());
        d.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(d.finish().as_ref());
    out
}

/// `Basic base64(user:password)` → (user, password).
fn decode(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // bcrypt of "secret", cost 4.
    const HASH: &str = "$2y$04$EQrToDZ/8wF8qZpShhExoO.g5qm2BI4GGnRkrYUQyKFP8UegEGiMu";

    fn header(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::try_from(format!("Basic {b}")).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn right_wrong_unknown_and_malformed() {
        let a = BasicAuth::new([("alice".to_owned(), HASH.to_owned())].into());
        assert!(a.check(Some(&header("alice", "secret"))).await);
        // Cached: same answer.
        assert!(a.check(Some(&header("alice", "secret"))).await);
        assert!(!a.check(Some(&header("alice", "Secret"))).await);
        assert!(!a.check(Some(&header("bob", "secret"))).await);
        assert!(!a.check(None).await);
        assert!(!a.check(Some(&HeaderValue::from_static("Bearer x"))).await);
        assert!(!a.check(Some(&HeaderValue::from_static("Basic !!!"))).await);
        assert!(
            a.check(Some(
                &HeaderValue::try_from(format!(
                    "basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:secret")
                ))
                .unwrap()
            ))
            .await
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cache_stays_bounded() {
        let a = BasicAuth::new([("alice".to_owned(), HASH.to_owned())].into());
        for i in 0..(CACHE_ENTRIES + 20) {
            assert!(!a.check(Some(&header("alice", &format!("wrong{i}")))).await);
        }
        assert!(a.cache.lock().unwrap().len() <= CACHE_ENTRIES);
    }
}
