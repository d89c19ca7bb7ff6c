//! Notifications out: the hub tells the city's other systems what happens to outages and
//! work orders, as webhooks that follow the Standard Webhooks specification, and people
//! by e-mail: crews and dispatchers the same events, residents who asked for it the works
//! planned in their district.
//!
//! The messages are queued in the database by the transactions that record the events
//! (`store::notifications`); this crate only delivers them, so a slow or absent receiver
//! never holds up ingestion or the rules, and a restart loses nothing.
//!
//! - [`signature`]: the secrets subscriptions are given and the `webhook-signature` of a
//!   message (HMAC-SHA256 over `id.timestamp.body`).
//! - [`address`]: where a webhook may be sent (`http` or `https`, and not into the hub's
//!   own network unless the configuration allows it), checked when a subscription is made
//!   and again for every address a name resolves to.
//! - [`deliverer`]: the loop that takes each subscription's oldest message, sends it (a
//!   POST, or a mail), records the attempt, waits after a failure (doubling up to a
//!   ceiling) and disables a subscription that has failed for too long, with the reason.
//! - [`email`]: the SMTP connection and the mails: a resident's confirmation, planned
//!   works, and outage and work order events for crews and dispatchers.

pub mod address;
pub mod deliverer;
pub mod email;
pub mod signature;

use serde::{Deserialize, Serialize};

pub use deliverer::run;
pub use email::EmailConfig;

/// How webhooks are delivered (`[webhooks]` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Seconds one attempt may take, connecting included.
    pub timeout_s: f64,
    /// The wait after a first failure, seconds; it doubles with each failure in a row.
    pub retry_first_s: f64,
    /// The longest wait between two attempts, seconds: a receiver back after a long outage
    /// gets its messages within this.
    pub retry_max_s: f64,
    /// A subscription that has not had a message through for this long, failing all the
    /// while, is disabled with the reason; an administrator enables it again.
    pub disable_after_s: f64,
    /// Subscriptions delivered to at once.
    pub concurrency: usize,
    /// Whether webhooks may be sent to loopback, private, link-local and other addresses
    /// that are not the public internet (the hub's own network). Off by default: a
    /// subscription could otherwise reach the database or a cloud's metadata service.
    pub allow_private_addresses: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_s: 10.0,
            retry_first_s: 5.0,
            retry_max_s: 300.0,
            disable_after_s: 3.0 * 24.0 * 3600.0,
            concurrency: 8,
            allow_private_addresses: false,
        }
    }
}

impl WebhookConfig {
    /// The wait after `failures` failed attempts in a row.
    pub fn backoff(&self, failures: i32) -> std::time::Duration {
        let doublings = failures.saturating_sub(1).clamp(0, 30);
        let wait = (self.retry_first_s * f64::from(1u32 << doublings)).min(self.retry_max_s);
        std::time::Duration::from_secs_f64(wait.max(0.0))
    }

    /// Why the settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("webhooks.timeout_s", self.timeout_s),
            ("webhooks.retry_first_s", self.retry_first_s),
            ("webhooks.retry_max_s", self.retry_max_s),
            ("webhooks.disable_after_s", self.disable_after_s),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!(
                "{name} must be a positive number of seconds, not {v}"
            ));
        }
        if self.retry_max_s < self.retry_first_s {
            return Err("webhooks.retry_max_s must be at least webhooks.retry_first_s".into());
        }
        if self.concurrency == 0 {
            return Err("webhooks.concurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_wait_doubles_from_the_first_to_the_ceiling() {
        let c = WebhookConfig {
            retry_first_s: 5.0,
            retry_max_s: 300.0,
            ..WebhookConfig::default()
        };
        let waits: Vec<u64> = (1..=9).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(c.backoff(0), Duration::from_secs(5));
        assert_eq!(c.backoff(i32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert_eq!(WebhookConfig::default().check(), Ok(()));
        for (c, why) in [
            (
                WebhookConfig {
                    timeout_s: 0.0,
                    ..WebhookConfig::default()
                },
                "webhooks.timeout_s",
            ),
            (
                WebhookConfig {
                    retry_first_s: f64::NAN,
                    ..WebhookConfig::default()
                },
                "webhooks.retry_first_s",
            ),
            (
                WebhookConfig {
                    retry_max_s: 1.0,
                    ..WebhookConfig::default()
                },
                "at least webhooks.retry_first_s",
            ),
            (
                WebhookConfig {
                    concurrency: 0,
                    ..WebhookConfig::default()
                },
                "webhooks.concurrency",
            ),
        ] {
            let e = c.check().unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
