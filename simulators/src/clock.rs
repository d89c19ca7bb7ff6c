//! Simulated time: `sim = sim_origin + (wall - wall_origin) * speed`.
//!
//! Two processes given the same three numbers agree on the time, which is how the hub is
//! told the simulators' clock (`CITYHUB_SIM_CLOCK=wall_origin_ms,sim_origin_ms,speed`).

use std::time::Duration;

use model::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimClock {
    pub wall_origin_ms: i64,
    pub sim_origin_ms: i64,
    pub speed: f64,
}

impl SimClock {
    /// Real time.
    pub fn wall() -> SimClock {
        SimClock {
            wall_origin_ms: 0,
            sim_origin_ms: 0,
            speed: 1.0,
        }
    }

    /// Starts now at `sim_start`, running `speed` times faster than real time.
    pub fn starting_at(sim_start: Timestamp, speed: f64) -> SimClock {
        SimClock {
            wall_origin_ms: chrono::Utc::now().timestamp_millis(),
            sim_origin_ms: sim_start.micros() / 1000,
            speed,
        }
    }

    pub fn now(&self) -> Timestamp {
        let wall = chrono::Utc::now().timestamp_micros();
        let elapsed = (wall - self.wall_origin_ms * 1000) as f64 * self.speed;
        Timestamp(self.sim_origin_ms * 1000 + elapsed as i64)
    }

    /// How long in real time `sim` of simulated time takes.
    pub fn real(&self, sim: Duration) -> Duration {
        sim.div_f64(self.speed.max(1e-9))
    }

    /// `wall_origin_ms,sim_origin_ms,speed`
    pub fn parse(s: &str) -> Result<SimClock, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || {
            format!("`{s}` is not wall_origin_ms,sim_origin_ms,speed (e.g. 1795338000000,1795370400000,60)")
        };
        let [w, o, v] = parts[..] else {
            return Err(bad());
        };
        let clock = SimClock {
            wall_origin_ms: w.parse().map_err(|_| bad())?,
            sim_origin_ms: o.parse().map_err(|_| bad())?,
            speed: v.parse().map_err(|_| bad())?,
        };
        if !(clock.speed > 0.0 && clock.speed <= 100_000.0) {
            return Err(format!(
                "speed {} must be above 0 and at most 100000",
                clock.speed
            ));
        }
        Ok(clock)
    }
}

impl std::fmt::Display for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.wall_origin_ms, self.sim_origin_ms, self.speed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_faster_and_round_trips_through_text() {
        let start = Timestamp::from_unix_ms(1_795_370_400_000).unwrap();
        let clock = SimClock::starting_at(start, 3600.0);
        let t = clock.now();
        assert!(
            t >= start && t.micros() - start.micros() < 3_600_000_000,
            "{t}"
        );
        assert_eq!(SimClock::parse(&clock.to_string()), Ok(clock));
        assert_eq!(
            clock.real(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
        assert!(SimClock::parse("1,2").is_err());
        assert!(SimClock::parse("1,2,0").is_err());
    }
}
