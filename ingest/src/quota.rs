//! How many dead letters each device may have stored: a token bucket per device that
//! holds `per_hour` and refills at `per_hour` an hour. A device that sends nothing but
//! refusals (a bad firmware, someone with its credential) gets its first `per_hour`
//! stored, then one every `3600 / per_hour` seconds; the rest are counted and dropped, so
//! no device can fill the disk. A dead letter is what a person reads to fix a device: a
//! steady sample of them is as useful as all of them.
//!
//! A device is the `city/{tenant}/{kind}/{device}` prefix of the topic (what its broker
//! account may publish under). Topics that name no device of the inventory share one
//! bucket per tenant ([`key_of`]): an account that may publish for many devices (a
//! gateway) gains nothing by making device ids up. Kept in memory: it restarts full with
//! the hub.
//! Pure state: the caller says what time it is.

use std::collections::HashMap;
use std::time::Instant;

/// Devices tracked before the full buckets (those that carry no state) are swept.
const SWEEP_ABOVE: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The dead letters each device may still have stored.
pub struct DeadLetterQuota {
    per_hour: f64,
    buckets: HashMap<String, Bucket>,
}

impl DeadLetterQuota {
    /// `per_hour` dead letters per device and hour; 0 stores every one.
    pub fn new(per_hour: u32) -> DeadLetterQuota {
        DeadLetterQuota {
            per_hour: f64::from(per_hour),
            buckets: HashMap::new(),
        }
    }

    /// How many of `wanted` dead letters of a message may be stored at `now`, from the
    /// bucket `key` ([`key_of`] its topic).
    pub fn grant(&mut self, key: &str, wanted: usize, now: Instant) -> usize {
        if self.per_hour == 0.0 || wanted == 0 {
            return wanted;
        }
        if self.buckets.len() > SWEEP_ABOVE {
            let per_hour = self.per_hour;
            self.buckets
                .retain(|_, b| refilled(b, per_hour, now) < per_hour);
            if self.buckets.len() > SWEEP_ABOVE {
                self.buckets.clear();
            }
        }
        let per_hour = self.per_hour;
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: per_hour,
            at: now,
        });
        bucket.tokens = refilled(bucket, per_hour, now);
        bucket.at = now;
        let granted = (bucket.tokens.floor() as usize).min(wanted);
        bucket.tokens -= granted as f64;
        granted
    }
}

fn refilled(b: &Bucket, per_hour: f64, now: Instant) -> f64 {
    let hours = now.saturating_duration_since(b.at).as_secs_f64() / 3600.0;
    (b.tokens + hours * per_hour).min(per_hour)
}

/// The bucket of a message's topic: its device (`city/{tenant}/{kind}/{device}`) when the
/// inventory has it, else its tenant's bucket of unregistered topics.
pub fn key_of(topic: &str, registered: bool) -> String {
    if registered {
        return device_of(topic).to_owned();
    }
    let tenant = topic.split('/').nth(1).unwrap_or_default();
    let mut end = tenant.len().min(64);
    while !tenant.is_char_boundary(end) {
        end -= 1;
    }
    format!("unregistered:{}", &tenant[..end])
}

/// The device part of a topic: `city/{tenant}/{kind}/{device}`, or the topic itself when
/// it is shorter (such a topic is refused as bad anyway; at most 256 bytes of it count).
fn device_of(topic: &str) -> &str {
    let end = topic
        .match_indices('/')
        .nth(3)
        .map_or(topic.len(), |(i, _)| i);
    let mut end = end.min(256);
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    &topic[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_device_gets_its_hourly_share_then_a_steady_trickle() {
        let mut q = DeadLetterQuota::new(10);
        let t0 = Instant::now();
        let lamp = &key_of("city/lisbon/light/L1/telemetry", true);
        assert_eq!(q.grant(lamp, 4, t0), 4);
        assert_eq!(
            q.grant(&key_of("city/lisbon/light/L1/event", true), 10, t0),
            6,
            "one device, any channel"
        );
        assert_eq!(q.grant(lamp, 1, t0), 0);
        assert_eq!(
            q.grant(&key_of("city/lisbon/light/L2/telemetry", true), 3, t0),
            3,
            "another device"
        );
        assert_eq!(
            q.grant(lamp, 5, t0 + Duration::from_secs(720)),
            2,
            "6 minutes: 1 more each"
        );
        assert_eq!(
            q.grant(lamp, 50, t0 + Duration::from_secs(7200)),
            10,
            "never above the share"
        );
    }

    #[test]
    fn made_up_devices_share_their_tenants_bucket() {
        let mut q = DeadLetterQuota::new(10);
        let t0 = Instant::now();
        let mut stored = 0;
        for n in 0..1000 {
            let topic = format!("city/lisbon/light/MADE-UP-{n}/telemetry");
            stored += q.grant(&key_of(&topic, false), 1, t0);
        }
        assert_eq!(stored, 10, "one tenant's share for every made-up id");
        let other = key_of("city/porto/light/X/telemetry", false);
        assert_eq!(q.grant(&other, 3, t0), 3, "another tenant's own share");
        assert_eq!(
            key_of("city/lisbon/light/L1/telemetry", true),
            "city/lisbon/light/L1"
        );
        assert_eq!(key_of("nonsense", false), "unregistered:");
    }

    #[test]
    fn zero_means_no_limit_and_topics_name_their_device() {
        let mut q = DeadLetterQuota::new(0);
        assert_eq!(
            q.grant("city/a/light/L1/telemetry", 1000, Instant::now()),
            1000
        );
        assert_eq!(device_of("city/a/light/L1/cmd/ack"), "city/a/light/L1");
        assert_eq!(device_of("nonsense"), "nonsense");
        assert_eq!(device_of(&"é".repeat(300)).len(), 256);
    }
}
