//! E-mail: the SMTP connection (`[email]` in the configuration) and the mails made from
//! queued messages: a resident's confirmation, planned works, and outage and work order
//! events for crews and dispatchers. Plain text, with a one-click unsubscribe link (RFC
//! 8058) in every mail but a confirmation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How mail leaves the hub (`[email]`). Without `smtp_host` no mail is sent, and nobody
/// may subscribe by e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server (the city's relay); empty: no e-mail.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (required: no mail goes out unencrypted), `tls` (SMTPS, usually port
    /// 465), or `none` (a relay on this machine or a network the city trusts).
    pub tls: Tls,
    /// The account, when the server asks for one.
    pub username: Option<String>,
    /// Never printed with the configuration.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// Who mails come from, e.g. `City works <works@city.example>`.
    pub from: String,
    /// The hub's address as residents reach it (`https://works.city.example`), for the
    /// links in mails: confirming, unsubscribing, the status page.
    pub public_url: String,
    /// Seconds one mail may take, connecting included.
    pub timeout_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    Starttls,
    Tls,
    None,
}

impl std::str::FromStr for Tls {
    type Err = String;

    fn from_str(s: &str) -> Result<Tls, String> {
        match s {
            "starttls" => Ok(Tls::Starttls),
            "tls" => Ok(Tls::Tls),
            "none" => Ok(Tls::None),
            _ => Err(format!("`{s}` is not starttls, tls or none")),
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_host: String::new(),
            smtp_port: 587,
            tls: Tls::Starttls,
            username: None,
            password: None,
            from: "cityhub <cityhub@localhost>".into(),
            public_url: String::new(),
            timeout_s: 30.0,
        }
    }
}

impl EmailConfig {
    /// Whether mail can be sent (and residents' links made).
    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }

    /// Why the settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|e| format!("email.from `{}` is not a mailbox: {e}", self.from))?;
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err("email.public_url is needed with email.smtp_host: the hub's address as residents reach it (https://...), for the links in mails".into());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("email.username and email.password go together".into());
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err("email.timeout_s must be a positive number of seconds".into());
        }
        Ok(())
    }

    /// The link `path` (starting with `/`) under the public address.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.trim_end_matches('/'))
    }
}

/// The SMTP connection.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    config: EmailConfig,
}

impl Mailer {
    /// The mailer of `config`; none when e-mail is off.
    pub fn new(config: &EmailConfig) -> Result<Option<Mailer>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        config.check()?;
        let host = config.smtp_host.as_str();
        let builder = match config.tls {
            Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("email.smtp_host: {e}"))?,
            Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("email.smtp_host: {e}"))?,
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder
            .port(config.smtp_port)
            .timeout(Some(Duration::from_secs_f64(config.timeout_s)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from: config
                .from
                .parse()
                .map_err(|e| format!("email.from: {e}"))?,
            config: config.clone(),
        }))
    }

    /// Sends the mail of message `id` (`event_type`, `body` as queued) to `to`, with the
    /// unsubscribe link of `unsubscribe` (the tenant's slug and the token) in it.
    pub async fn send(
        &self,
        to: &str,
        id: i64,
        event_type: &str,
        body: &str,
        unsubscribe: Option<(&str, &str)>,
    ) -> Result<(), String> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("`{to}` is not an e-mail address: {e}"))?;
        let payload: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let (subject, mut text) = compose(&self.config, event_type, &payload);
        let unsubscribe = (event_type != CONFIRM)
            .then_some(unsubscribe)
            .flatten()
            .map(|(tenant, token)| {
                self.config.link(&format!(
                    "/public/{tenant}/subscriptions/unsubscribe?token={token}"
                ))
            });
        if let Some(link) = &unsubscribe {
            text.push_str(&format!("\n\n--\nTo stop these mails: {link}\n"));
        }
        let host = self.from.email.domain().to_owned();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<msg_{id}@{host}>")))
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ));
        if let Some(link) = &unsubscribe {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{link}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let message = builder.body(text).map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

/// A resident's confirmation.
pub const CONFIRM: &str = "subscription.confirm";

/// The subject and text of a message.
pub fn compose(config: &EmailConfig, event_type: &str, payload: &Value) -> (String, String) {
    let data = &payload["data"];
    let s = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    let city = match s("tenant_name") {
        n if n.is_empty() => s("tenant"),
        n => n,
    };
    match event_type {
        CONFIRM => {
            let place = data["district"]
                .as_str()
                .map_or("the whole city".to_owned(), str::to_owned);
            let link = config.link(&format!(
                "/public/{}/subscriptions/confirm?token={}",
                s("tenant"),
                s("token")
            ));
            (
                format!("Confirm: planned works in {place}, {city}"),
                format!(
                    "Someone, we hope you, asked to be told by e-mail of the works planned in \
                     {place}, {city}.\n\nTo start, open this link and confirm:\n{link}\n\n\
                     If it was not you, ignore this mail: nothing more is sent to this \
                     address unless it is confirmed.\n"
                ),
            )
        }
        "planned_works.announced" => {
            let districts: Vec<&str> = data["districts"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let place = match (s("scope").as_str(), districts.as_slice()) {
                ("tenant", _) | (_, []) => "the whole city".to_owned(),
                (_, [one]) => (*one).to_owned(),
                (_, many) => many.join(", "),
            };
            let (from, until) = (when(&s("starts_at")), when(&s("ends_at")));
            (
                format!("Planned works in {place}: {from} to {until}"),
                format!(
                    "Works are planned in {place}, {city}, from {from} to {until}.\n\
                     Street lights or water there may be off meanwhile.\n\n\
                     The city's works now and to come: {}\n",
                    config.link(&format!("/public/{}/", s("tenant")))
                ),
            )
        }
        _ => {
            let what = event_type.replace(['.', '_'], " ");
            let mut text = format!("{what}\n\n");
            if let Some(fields) = data.as_object() {
                for (k, v) in fields {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    text.push_str(&format!("{k}: {v}\n"));
                }
            }
            (
                format!(
                    "[{city}] {what}: {} {} ({})",
                    s("kind").replace('_', " "),
                    s("device"),
                    data["district"].as_str().unwrap_or("no district")
                ),
                text,
            )
        }
    }
}

/// A time of a message, as a person reads it (UTC: the mail does not know the reader's
/// time zone).
fn when(rfc3339: &str) -> String {
    rfc3339
        .parse::<DateTime<Utc>>()
        .map(|t| t.format("%a %-d %b %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// A new token for the links of a subscription's mails: 32 random bytes, URL-safe.
pub fn new_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` looks like one [`new_token`] makes (before it is looked up).
pub fn plausible_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An address a person may subscribe, as it is kept; or why not.
pub fn check_address(email: &str) -> Result<String, String> {
    let email = email.trim();
    if email.len() > 254 || email.chars().any(char::is_control) {
        return Err(
            "an e-mail address has at most 254 characters and no control characters".into(),
        );
    }
    email
        .parse::<Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("`{email}` is not an e-mail address: {e}"))
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = format!("the mail server refused or failed: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> EmailConfig {
        EmailConfig {
            smtp_host: "mail.city.example".into(),
            public_url: "https://works.city.example/".into(),
            ..EmailConfig::default()
        }
    }

    #[test]
    fn a_confirmation_links_to_its_token_under_the_public_address() {
        let (subject, text) = compose(
            &config(),
            CONFIRM,
            &json!({"data": {"tenant": "lisbon", "tenant_name": "Lisboa", "district": "Baixa",
                             "token": "abc"}}),
        );
        assert_eq!(subject, "Confirm: planned works in Baixa, Lisboa");
        assert!(
            text.contains(
                "https://works.city.example/public/lisbon/subscriptions/confirm?token=abc"
            ),
            "{text}"
        );
    }

    #[test]
    fn planned_works_say_where_and_when() {
        let (subject, text) = compose(
            &config(),
            "planned_works.announced",
            &json!({"data": {"tenant": "lisbon", "tenant_name": "Lisboa", "scope": "district",
                             "districts": ["Baixa"], "starts_at": "2026-12-14T08:00:00.000000Z",
                             "ends_at": "2026-12-14T17:30:00.000000Z"}}),
        );
        assert_eq!(
            subject,
            "Planned works in Baixa: Mon 14 Dec 2026, 08:00 UTC to Mon 14 Dec 2026, 17:30 UTC"
        );
        assert!(
            text.contains("https://works.city.example/public/lisbon/"),
            "{text}"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            check_address(" ana@example.org ").as_deref(),
            Ok("ana@example.org")
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.org",
            "a\u{0}@example.org",
            "a b@example.org",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(check_address(&long).unwrap_err().contains("254"));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert_eq!(EmailConfig::default().check(), Ok(()));
        assert_eq!(config().check(), Ok(()));
        for (c, why) in [
            (
                EmailConfig {
                    public_url: String::new(),
                    ..config()
                },
                "email.public_url",
            ),
            (
                EmailConfig {
                    from: "not a mailbox".into(),
                    ..config()
                },
                "email.from",
            ),
            (
                EmailConfig {
                    username: Some("hub".into()),
                    ..config()
                },
                "go together",
            ),
        ] {
            assert!(c.check().unwrap_err().contains(why));
        }
    }
}
