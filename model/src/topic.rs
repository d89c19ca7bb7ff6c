//! Topic grammar of the device contract: `city/{tenant}/{kind}/{device}/{channel}`.

use std::fmt;

use crate::Rejection;

/// What a device is, as named in the topic and in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Light,
    Cabinet,
    Meter,
    Vehicle,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Light, Kind::Cabinet, Kind::Meter, Kind::Vehicle];
    /// The names of [`Kind::ALL`], in order.
    pub const NAMES: [&'static str; 4] = [
        Kind::Light.as_str(),
        Kind::Cabinet.as_str(),
        Kind::Meter.as_str(),
        Kind::Vehicle.as_str(),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Light => "light",
            Kind::Cabinet => "cabinet",
            Kind::Meter => "meter",
            Kind::Vehicle => "vehicle",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How often a device of this kind reports, seconds, unless the rules file says
    /// otherwise (`[silence]`): what silence and staleness are measured in.
    pub fn reporting_interval_s(self) -> i64 {
        match self {
            Kind::Light => 900,
            Kind::Cabinet => 300,
            Kind::Meter => 3600,
            Kind::Vehicle => 10,
        }
    }
}

/// How long, seconds, a message may still be on its way through the broker and the hub
/// before its device counts as late, unless the rules file says otherwise.
pub const REPORT_GRACE_S: i64 = 10;

impl crate::Vocabulary for Kind {
    fn all() -> &'static [Kind] {
        &Kind::ALL
    }

    fn as_str(self) -> &'static str {
        Kind::as_str(self)
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::parse(s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last topic level(s): what the message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// device -> hub, readings.
    Telemetry,
    /// device -> hub, discrete events.
    Event,
    /// device -> hub, retained online/offline (also the last will).
    Status,
    /// hub -> device, commands. Never accepted as input by the hub.
    Cmd,
    /// device -> hub, command acknowledgements.
    CmdAck,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Telemetry => "telemetry",
            Channel::Event => "event",
            Channel::Status => "status",
            Channel::Cmd => "cmd",
            Channel::CmdAck => "cmd/ack",
        }
    }
}

/// A parsed device topic. Borrows from the topic string: parsing allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    pub tenant: &'a str,
    pub kind: Kind,
    pub device: &'a str,
    pub channel: Channel,
}

impl<'a> Topic<'a> {
    pub fn parse(topic: &'a str) -> Result<Topic<'a>, Rejection> {
        let bad = |why: &str| Rejection::BadTopic(why.to_owned());
        let mut levels = topic.split('/');
        if levels.next() != Some("city") {
            return Err(bad("topic must start with `city/`"));
        }
        let tenant = levels.next().unwrap_or_default();
        if !valid_tenant(tenant) {
            return Err(bad("tenant must be 1-32 characters of a-z, 0-9 and `-`"));
        }
        let kind = levels.next().unwrap_or_default();
        let kind = Kind::parse(kind)
            .ok_or_else(|| bad("kind must be one of light, cabinet, meter, vehicle"))?;
        let device = levels.next().unwrap_or_default();
        if !valid_device(device) {
            return Err(bad(
                "device id must be 1-64 characters of A-Z, a-z, 0-9, `_`, `.` and `-`",
            ));
        }
        let channel = match (levels.next(), levels.next(), levels.next()) {
            (Some("telemetry"), None, _) => Channel::Telemetry,
            (Some("event"), None, _) => Channel::Event,
            (Some("status"), None, _) => Channel::Status,
            (Some("cmd"), None, _) => Channel::Cmd,
            (Some("cmd"), Some("ack"), None) => Channel::CmdAck,
            _ => {
                return Err(bad(
                    "channel must be one of telemetry, event, status, cmd, cmd/ack",
                ))
            }
        };
        Ok(Topic {
            tenant,
            kind,
            device,
            channel,
        })
    }

    /// The topic string for `channel` of this device.
    pub fn format(tenant: &str, kind: Kind, device: &str, channel: Channel) -> String {
        format!("city/{tenant}/{kind}/{device}/{}", channel.as_str())
    }
}

/// `[a-z0-9-]{1,32}`
pub fn valid_tenant(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[A-Za-z0-9_.-]{1,64}`
pub fn valid_device(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(topic: &str, expected: Result<(&str, Kind, &str, Channel), &str>) {
        let got = Topic::parse(topic)
            .map(|t| (t.tenant, t.kind, t.device, t.channel))
            .map_err(|e| e.to_string());
        match expected {
            Ok(want) => assert_eq!(got, Ok(want), "{topic}"),
            Err(fragment) => {
                let err = got.expect_err(topic);
                assert!(err.contains(fragment), "{topic}: {err}");
            }
        }
    }

    #[test]
    fn parses_every_channel() {
        use Channel::*;
        check(
            "city/lisbon/light/L-1/telemetry",
            Ok(("lisbon", Kind::Light, "L-1", Telemetry)),
        );
        check(
            "city/a/cabinet/C.7/event",
            Ok(("a", Kind::Cabinet, "C.7", Event)),
        );
        check(
            "city/a-2/meter/m_1/status",
            Ok(("a-2", Kind::Meter, "m_1", Status)),
        );
        check(
            "city/x/vehicle/bus9/cmd",
            Ok(("x", Kind::Vehicle, "bus9", Cmd)),
        );
        check(
            "city/x/light/l1/cmd/ack",
            Ok(("x", Kind::Light, "l1", CmdAck)),
        );
    }

    #[test]
    fn rejects_malformed_topics_with_a_reason() {
        check("town/x/light/l1/telemetry", Err("must start with `city/`"));
        check("city/X/light/l1/telemetry", Err("tenant"));
        check("city//light/l1/telemetry", Err("tenant"));
        check(
            &format!("city/{}/light/l1/telemetry", "a".repeat(33)),
            Err("tenant"),
        );
        check("city/x/lamp/l1/telemetry", Err("kind"));
        check("city/x/light/l 1/telemetry", Err("device id"));
        check(
            &format!("city/x/light/{}/telemetry", "d".repeat(65)),
            Err("device id"),
        );
        check("city/x/light/l1/readings", Err("channel"));
        check("city/x/light/l1/telemetry/extra", Err("channel"));
        check("city/x/light/l1/cmd/ack/more", Err("channel"));
        check("city/x/light/l1", Err("channel"));
    }

    #[test]
    fn format_round_trips() {
        let s = Topic::format("x", Kind::Meter, "m1", Channel::CmdAck);
        assert_eq!(s, "city/x/meter/m1/cmd/ack");
        assert_eq!(Topic::parse(&s).unwrap().channel, Channel::CmdAck);
    }
}
