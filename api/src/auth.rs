//! Credentials: password hashing, session and API tokens, the session secret.
//!
//! - Passwords: Argon2id with the crate's defaults (OWASP's minimum: 19 MiB, 2 passes),
//!   stored as PHC strings, so parameters can be raised later without breaking old hashes.
//! - Session tokens: 32 random bytes in the `cityhub_session` cookie; the database keeps
//!   HMAC-SHA256(session secret, token), so a copy of the `sessions` table cannot be
//!   turned back into cookies without the secret.
//! - API tokens: `chk_` + 32 random bytes; the database keeps their SHA-256. They are
//!   created from the command line, where the server's secret may not be known, and 256
//!   random bits need no key or salt to resist guessing.

use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The fewest characters a password may have (NIST SP 800-63B asks at least 8; a control
/// room's accounts deserve more).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Longer passwords are refused before hashing: Argon2 over megabytes is a cheap way to
/// make the server work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The prefix of every API token, so a leaked one is recognizable (and scannable).
pub const API_TOKEN_PREFIX: &str = "chk_";

/// Hashes a password for storage (an Argon2id PHC string with a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the stored PHC string. A malformed string matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that a wrong user name takes
/// as long as a wrong password and the timing does not tell which user names exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("no such user, no such password").unwrap_or_default())
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A new session token for the cookie.
pub fn new_session_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// A new API token, shown once.
pub fn new_api_token() -> String {
    format!(
        "{API_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes())
    )
}

/// What the database keeps of an API token.
pub fn api_token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The key sessions are hashed with. Never printed: its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SessionSecret(Vec<u8>);

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(hidden)")
    }
}

/// The fewest characters a configured session secret may have.
pub const MIN_SECRET_CHARS: usize = 32;

impl SessionSecret {
    /// A configured secret, refused when it is short or looks like a placeholder; the
    /// error is a sentence to show after the setting's name.
    pub fn parse(secret: &str) -> Result<SessionSecret, String> {
        let chars = secret.chars().count();
        if chars < MIN_SECRET_CHARS {
            return Err(format!(
                "is too short ({chars} characters): use at least {MIN_SECRET_CHARS} random characters, e.g. the output of `openssl rand -hex 32`"
            ));
        }
        if looks_like_placeholder(secret) {
            return Err(
                "looks like a placeholder, not a secret: use random characters, e.g. the output of `openssl rand -hex 32`"
                    .into(),
            );
        }
        Ok(SessionSecret(secret.as_bytes().to_vec()))
    }

    /// A random secret for this run only: sessions end when the process does.
    pub fn generate() -> SessionSecret {
        SessionSecret(random_bytes().to_vec())
    }

    /// What the database keeps of a session token.
    pub fn session_digest(&self, token: &str) -> Vec<u8> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Whether a long secret is still a guessable one: few distinct characters ("aaaa…",
/// "abab…"), a short pattern repeated ("changemechangeme…"), or mostly the words people
/// put in examples.
fn looks_like_placeholder(secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return true;
    }
    let repeats = (1..=chars.len() / 2).any(|period| {
        chars.len() % period == 0 && chars.chunks(period).all(|c| c == &chars[..period])
    });
    if repeats {
        return true;
    }
    let mut rest = secret.to_lowercase();
    for word in [
        "changeme", "change", "secret", "password", "default", "example", "session", "cityhub",
        "replace", "please", "this", "your", "key", "test",
    ] {
        rest = rest.replace(word, "");
    }
    rest.chars().filter(|c| c.is_ascii_alphanumeric()).count() < 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, b) = (new_api_token(), new_api_token());
        assert_ne!(a, b);
        assert!(a.starts_with(API_TOKEN_PREFIX) && a.len() == 4 + 43, "{a}");
        assert_eq!(api_token_digest(&a).len(), 32);
        assert_ne!(api_token_digest(&a), api_token_digest(&b));
        assert_eq!(new_session_token().len(), 43);
    }

    #[test]
    fn session_digests_depend_on_the_secret() {
        let s1 = SessionSecret::parse("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b").unwrap();
        let s2 = SessionSecret::generate();
        assert_eq!(s1.session_digest("t"), s1.session_digest("t"));
        assert_ne!(s1.session_digest("t"), s2.session_digest("t"));
        assert_ne!(s1.session_digest("t"), api_token_digest("t"));
        assert_eq!(format!("{s1:?}"), "SessionSecret(hidden)");
    }

    #[test]
    fn weak_secrets_are_refused_with_a_reason() {
        let check = |secret: &str, fragment: &str| {
            let why = SessionSecret::parse(secret).unwrap_err();
            assert!(why.contains(fragment), "{secret}: {why}");
        };
        check("changeme", "too short (8 characters)");
        check("secret", "too short");
        check(&"a".repeat(40), "placeholder");
        check(&"ab".repeat(20), "placeholder");
        check(&"changeme".repeat(5), "placeholder");
        check("this-is-my-session-secret-please-change", "placeholder");
        check("0123456701234567012345670123456701234567", "placeholder");
        for good in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "Lc7xQ2-vR9mZp4Tn8Wd3Hs6Jk1Yb5Ue0",
        ] {
            assert!(SessionSecret::parse(good).is_ok(), "{good}");
        }
    }
}
