//! What a lamp should do: the astronomical clock at its place, unless a schedule or a
//! command in force says otherwise.
//!
//! A `set_light` command (`on`, `dim`, `expires`) overrides everything until it expires. A
//! `set_schedule` command replaces the astronomical default with a profile, read and
//! evaluated by [`model::lighting`] (the simulated lamps use the same code).

use model::Timestamp;

pub use model::lighting::{Expected, Schedule, Step};

/// A `set_light` command in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Override {
    pub expected: Expected,
    pub until: Option<Timestamp>,
}

/// An instruction the lamp has acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    Light(Override),
    Schedule(Schedule),
}

impl Instruction {
    /// Reads an acknowledged command's body; `None` for actions that set no expectation
    /// (and for bodies that do not parse, which the lamp would have rejected).
    pub fn from_command(body: &serde_json::Value) -> Option<Instruction> {
        match body.get("action")?.as_str()? {
            "set_light" => {
                let on = body.get("on").and_then(|v| v.as_bool()).unwrap_or(true);
                let dim = body
                    .get("dim")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(100.0)
                    .clamp(0.0, 100.0);
                let until = match body.get("expires") {
                    Some(serde_json::Value::Number(n)) => {
                        n.as_i64().and_then(Timestamp::from_unix_ms)
                    }
                    Some(serde_json::Value::String(s)) => Timestamp::from_rfc3339(s),
                    _ => None,
                };
                let dim = if on { dim } else { 0.0 };
                Some(Instruction::Light(Override {
                    expected: Expected { on, dim },
                    until,
                }))
            }
            "set_schedule" => Schedule::from_command(body).map(Instruction::Schedule),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(hhmm: &str) -> Timestamp {
        Timestamp::from_rfc3339(&format!("2026-11-22T{hhmm}:00Z")).unwrap()
    }

    #[test]
    fn commands_become_instructions() {
        let light = Instruction::from_command(
            &json!({"action": "set_light", "on": true, "dim": 40, "expires": "2026-11-22T23:00:00Z"}),
        );
        assert_eq!(
            light,
            Some(Instruction::Light(Override {
                expected: Expected {
                    on: true,
                    dim: 40.0
                },
                until: Some(t("23:00")),
            }))
        );
        let off = Instruction::from_command(&json!({"action": "set_light", "on": false}));
        assert_eq!(
            off,
            Some(Instruction::Light(Override {
                expected: Expected::OFF,
                until: None
            }))
        );
        assert_eq!(
            Instruction::from_command(&json!({"action": "reboot"})),
            None
        );
        let bad_step = json!({"action": "set_schedule", "steps": [{"from": "25:00", "to": "01:00", "dim": 5}]});
        assert_eq!(Instruction::from_command(&bad_step), None);
    }
}
