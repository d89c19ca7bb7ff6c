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

/// Password checks on a few threads of their own, each with Argon2's working memory
/// (19 MiB) allocated once and used for every check it makes. Allocated per check on the
/// runtime's blocking threads, those blocks stayed with the process after a crowd of
/// sign-ins (the allocator keeps freed blocks of that size), which grew it by hundreds of
/// megabytes; here the memory is that few times 19 MiB, whatever comes.
pub struct PasswordCheckers {
    jobs: std::sync::mpsc::SyncSender<Check>,
    /// Callers waiting for a thread: one per thread at a time.
    turns: tokio::sync::Semaphore,
}

type Check = (String, String, tokio::sync::oneshot::Sender<bool>);

impl PasswordCheckers {
    /// Starts `threads` threads; they end when this is dropped.
    pub fn start(threads: usize) -> std::io::Result<PasswordCheckers> {
        let threads = threads.max(1);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Check>(threads);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // A panic while holding the lock leaves a receiver that still works.
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((password, hash, reply)) = next else {
                            return;
                        };
                        let _ = reply.send(verify_in(&password, &hash, &mut memory));
                    }
                })?;
        }
        Ok(PasswordCheckers {
            jobs,
            turns: tokio::sync::Semaphore::new(threads),
        })
    }

    /// Whether `password` matches the PHC string `hash`, checked on one of the threads
    /// when its turn comes; `None` if the threads are gone.
    pub async fn check(&self, password: String, hash: String) -> Option<bool> {
        let _turn = self.turns.acquire().await.ok()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        // Never full: no more checks are queued than there are turns.
        self.jobs.try_send((password, hash, reply)).ok()?;
        answer.await.ok()
    }
}

/// [`verify_password`], with Argon2's working memory in `memory` (grown to the hash's
/// size once, then reused).
fn verify_in(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::Output;
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash.version.map(argon2::Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    memory.resize(params.block_count(), argon2::Block::default());
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = vec![0u8; expected.len()];
    let computed = argon.hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        &mut memory[..],
    );
    // `Output`'s comparison takes the same time wherever the bytes differ.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
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
        let bits = guessing_bits(secret);
        if bits < MIN_SECRET_BITS {
            return Err(format!(
                "is too predictable: it runs along the alphabet, the digits or the keyboard, or repeats itself \
                 (about {bits:.0} bits by a guesser's count, {MIN_SECRET_BITS:.0} needed); use random characters, \
                 e.g. the output of `openssl rand -hex 32`"
            ));
        }
        Ok(SessionSecret(secret.as_bytes().to_vec()))
    }

    /// A random secret for this run only: sessions end when the process does.
    pub fn generate() -> SessionSecret {
        SessionSecret(random_bytes().to_vec())
    }

    /// What the database keeps of a session token.
    pub fn session_digest(&self, token: &str) -> Vec<u8> {
        self.mac(&[token.as_bytes()])
            .finalize()
            .into_bytes()
            .to_vec()
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// A device cookie's value for `username`: a random id and its MAC under the secret,
    /// `ID.MAC`. A browser that signed in as someone holds one, and the sign-in throttle
    /// counts its attempts for that name apart from everyone else's
    /// ([`crate::limiter::LoginLimiter::attempt`]).
    pub fn device_token(&self, username: &str) -> String {
        let id = URL_SAFE_NO_PAD.encode(&random_bytes()[..16]);
        let mac = self.device_mac(username, &id).finalize().into_bytes();
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The device id of `token` when it is a device cookie this secret made for
    /// `username` (compared in constant time); `None` for anything else.
    pub fn device_id<'t>(&self, token: &'t str, username: &str) -> Option<&'t str> {
        let (id, mac) = token.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.device_mac(username, id)
            .verify_slice(&mac)
            .ok()
            .map(|()| id)
    }

    fn device_mac(&self, username: &str, id: &str) -> hmac::Hmac<Sha256> {
        let name = username.to_lowercase();
        self.mac(&[b"device\0", name.as_bytes(), b"\0", id.as_bytes()])
    }
}

/// The fewest bits a configured secret must have by [`guessing_bits`]'s count. Random hex
/// of the shortest length accepted (32 characters, 128 bits) falls under this about never
/// (none of 2000 draws in the tests); `openssl rand -hex 32` counts over 200.
pub const MIN_SECRET_BITS: f64 = 96.0;

/// Bits a guesser who tries the predictable first would need, roughly. A character that
/// continues a pattern from the one before (the same again, the next or previous in the
/// alphabet or the digits, a key next to it on a keyboard), or from the last character
/// that continued none (a walk that jumps a row), costs 2 bits for the first two steps
/// of a walk and nothing after: a walk costs its start and direction, however long. The
/// third of three characters seen together earlier (a repeat) costs nothing. Any other
/// character costs the log2 of the alphabet its character classes span (digits 10,
/// lower and upper case 26 each, other printable ASCII 33, anything else 100).
pub fn guessing_bits(secret: &str) -> f64 {
    let chars: Vec<char> = secret.chars().collect();
    let mut alphabet: f64 = 0.0;
    for (class, size) in [
        (|c: &char| c.is_ascii_digit()) as fn(&char) -> bool,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_uppercase(),
        |c| c.is_ascii_punctuation() || *c == ' ',
        |c| !c.is_ascii(),
    ]
    .into_iter()
    .zip([10.0, 26.0, 26.0, 33.0, 100.0])
    {
        if chars.iter().any(class) {
            alphabet += size;
        }
    }
    let fresh = f64::log2(alphabet.max(2.0));
    let continues = |p: char, c: char| {
        (c as i64 - p as i64).abs() <= 1
            || keyboard_neighbours(p, c)
            || (p != c && p.to_lowercase().eq(c.to_lowercase()))
    };
    let step = |i: usize| chars[i] as i64 - chars[i - 1] as i64;
    let mut bits = 0.0;
    // The last character that continued nothing: a walk that jumps ("1qaz" then "2wsx")
    // picks up from it.
    let mut last_fresh: Option<char> = None;
    // Characters in a row that continued a pattern.
    let mut run = 0;
    for (i, &c) in chars.iter().enumerate() {
        let repeated = i >= 2 && chars[..i - 1].windows(3).any(|w| w == &chars[i - 2..=i]);
        // Two walks interleaved ("q1w2e3", "a1b2c3"): this character and the one before
        // each continue the character two before them.
        let interleaved =
            i >= 3 && continues(chars[i - 2], c) && continues(chars[i - 3], chars[i - 1]);
        // The same step again ("acegi", "0369"), or the same pair of steps ("aAbBcC").
        let steady = (i >= 2 && step(i) == step(i - 1) && step(i).abs() <= 4)
            || (i >= 4 && step(i) == step(i - 2) && step(i - 1) == step(i - 3));
        let follows = i > 0
            && (continues(chars[i - 1], c)
                || last_fresh.is_some_and(|f| continues(f, c))
                || interleaved
                || steady);
        if repeated || follows {
            run += 1;
            // A guesser pays for where a walk starts and which way it goes, not for
            // each step of it, and nothing for a repeat of what came before.
            if !repeated && run <= 2 {
                bits += 2.0;
            }
        } else {
            run = 0;
            bits += fresh;
            last_fresh = Some(c);
        }
    }
    bits
}

/// Whether two keys are next to each other on a US keyboard (a row, or the rows above
/// and below as they are staggered), case aside.
fn keyboard_neighbours(a: char, b: char) -> bool {
    const ROWS: [&str; 4] = [
        "1234567890-=",
        "qwertyuiop[]\\",
        "asdfghjkl;'",
        "zxcvbnm,./",
    ];
    // What the shift key gives on the same keys.
    const SHIFTED: [&str; 4] = [
        "!@#$%^&*()_+",
        "QWERTYUIOP{}|",
        "ASDFGHJKL:\"",
        "ZXCVBNM<>?",
    ];
    let at = |c: char| {
        let c = SHIFTED
            .iter()
            .zip(ROWS)
            .find_map(|(shifted, row)| shifted.find(c).and_then(|i| row[i..].chars().next()))
            .unwrap_or(c)
            .to_ascii_lowercase();
        ROWS.iter()
            .enumerate()
            .find_map(|(r, row)| row.find(c).map(|i| (r as i64, i as i64)))
    };
    let (Some((ra, ia)), Some((rb, ib))) = (at(a), at(b)) else {
        return false;
    };
    match rb - ra {
        0 => (ia - ib).abs() == 1,
        // A key touches the one above it and the one above and to the right.
        1 => ia == ib || ia == ib + 1,
        -1 => ib == ia || ib == ia + 1,
        _ => false,
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
    // The examples of UUIDs that documentation gives (RFC 4122's, Wikipedia's).
    let lower = secret.to_lowercase();
    if [
        "123e4567-e89b-12d3-a456-426614174000",
        "550e8400-e29b-41d4-a716-446655440000",
    ]
    .iter()
    .any(|example| lower.contains(example))
    {
        return true;
    }
    let mut rest = lower;
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
    fn a_check_with_reused_memory_agrees_with_the_library() {
        let hash = hash_password("correct horse battery").unwrap();
        let mut memory = Vec::new();
        for (password, right) in [
            ("correct horse battery", true),
            ("correct horse batterY", false),
            ("", false),
            ("correct horse battery", true),
        ] {
            assert_eq!(verify_in(password, &hash, &mut memory), right, "{password}");
            assert_eq!(verify_password(password, &hash), right, "{password}");
        }
        assert!(!verify_in("x", decoy_hash(), &mut memory));
        assert!(!verify_in("x", "not a hash", &mut memory));
        assert_eq!(
            memory.len() * std::mem::size_of::<argon2::Block>(),
            19 * 1024 * 1024
        );
    }

    #[test]
    fn a_device_cookie_is_good_for_its_name_under_its_secret_only() {
        let s1 = SessionSecret::generate();
        let s2 = SessionSecret::generate();
        let token = s1.device_token("Olga");
        let id = s1.device_id(&token, "olga").expect("its name, any case");
        assert!(token.starts_with(id));
        assert_eq!(s1.device_id(&token, "piotr"), None, "another name");
        assert_eq!(s2.device_id(&token, "olga"), None, "another secret");
        let (id, mac) = token.split_once('.').unwrap();
        let forged = format!("{id}x.{mac}");
        assert_eq!(s1.device_id(&forged, "olga"), None, "another id");
        for junk in ["", ".", "abc", "a.b.c", "\u{0}.\u{0}"] {
            assert_eq!(s1.device_id(junk, "olga"), None, "{junk:?}");
        }
        assert_ne!(
            s1.device_token("olga"),
            s1.device_token("olga"),
            "random ids"
        );
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
            let why = SessionSecret::parse(secret)
                .err()
                .unwrap_or_else(|| panic!("{secret} accepted: {} bits", guessing_bits(secret)));
            assert!(why.contains(fragment), "{secret}: {why}");
        };
        check("changeme", "too short (8 characters)");
        check("secret", "too short");
        check(&"a".repeat(40), "placeholder");
        check(&"ab".repeat(20), "placeholder");
        check(&"changeme".repeat(5), "placeholder");
        check("this-is-my-session-secret-please-change", "placeholder");
        check("0123456701234567012345670123456701234567", "placeholder");
        check("123e4567-e89b-12d3-a456-426614174000", "placeholder");
        check("550E8400-E29B-41D4-A716-446655440000", "placeholder");
        for walk in [
            // Interleaved walks, steady steps, case pairs, the shifted keyboard.
            "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9",
            "!@#$%^&*()_+QWERTYUIOP{}|ASDFGHJKL:\"ZXCVBNM<>?",
            "acegikmoqsuwyACEGIKMOQSUWY0246813579",
            "aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpP",
            "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6",
            // Long walks and repeats, however long.
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "qwertyuiopasdfghjklzxcvbnmQWERTYUIOPASDFGHJKLZXCVBNM1234567890",
            &"0123456789".repeat(7)[..49],
            &"1qaz2wsx".repeat(8)[..60],
            "12345678-1234-1234-1234-123456789abc",
            "0123456789abcdefghijklmnopqrstuv",
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "qwertyuiopasdfghjklzxcvbnm123456",
            "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,",
            "zyxwvutsrqponmlkjihgfedcba987654",
            "poiuytrewqlkjhgfdsamnbvcxz098765",
        ] {
            check(walk, "too predictable");
        }
        for good in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "Lc7xQ2-vR9mZp4Tn8Wd3Hs6Jk1Yb5Ue0",
            "5b2e8f1c9d0a47e3b6c1f8a2d4e7093b",
            "3f0c9a57d1e24b8c96a7f2e05b4d18c7a9e3f6b2",
        ] {
            assert!(
                SessionSecret::parse(good).is_ok(),
                "{good}: {}",
                guessing_bits(good)
            );
        }
    }

    /// Random secrets of the shortest length and alphabet accepted pass but for a rare
    /// few, and the usual ones always do.
    #[test]
    fn random_secrets_pass() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let hex = |rng: &mut rand::rngs::StdRng, n: usize| -> String {
            (0..n)
                .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap())
                .collect()
        };
        let short_refused = (0..2000)
            .filter(|_| guessing_bits(&hex(&mut rng, 32)) < MIN_SECRET_BITS)
            .count();
        assert!(
            short_refused <= 4,
            "{short_refused} of 2000 random 32-hex secrets refused"
        );
        for _ in 0..2000 {
            let s = hex(&mut rng, 64);
            assert!(guessing_bits(&s) > 2.0 * MIN_SECRET_BITS, "{s}");
        }
        // `openssl rand -base64 24`: 32 characters of 64.
        let base64 = |rng: &mut rand::rngs::StdRng| -> String {
            let mut bytes = [0u8; 24];
            rng.fill(&mut bytes);
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let refused = (0..2000)
            .filter(|_| SessionSecret::parse(&base64(&mut rng)).is_err())
            .count();
        assert!(
            refused <= 2,
            "{refused} of 2000 random base64 secrets refused"
        );
    }
}
