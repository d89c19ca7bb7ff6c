//! What the engine remembers between inputs ([`State`]), and the data it is made of: each
//! rule's memory (a lamp's relay, a meter's night, a vehicle's track, a pair's closeness),
//! the inputs waiting in time order and the deadlines time sets. Data only: the rules and
//! the engine that change it live in the other modules, and nothing here imports them.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use model::{Observation, OutageKind, RecordType, Timestamp};

use crate::condition::Condition;
use crate::schedule::{Instruction, Override, Schedule};

pub(crate) type Key = (i32, OutageKind);

/// What a rule last saw of an asset that has been faulty: the evidence repairs are
/// verified with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evidence {
    pub(crate) last_fault: Timestamp,
    /// The first healthy verdict after the last fault.
    pub(crate) healthy_since: Option<Timestamp>,
}

/// Everything the engine remembers between readings.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub(crate) conditions: HashMap<Key, Condition>,
    /// Open outages and when they opened.
    pub(crate) open: HashMap<Key, Timestamp>,
    /// When each device was last heard from, on the stream's time (see [`crate::silence`]).
    pub(crate) last_seen: HashMap<i32, Timestamp>,
    /// Devices whose last will (or own status) says offline, since when.
    pub(crate) offline: HashMap<i32, Timestamp>,
    /// Civil dawn and dusk per (place, solar day); lamps share their cabinet's.
    pub(crate) twilight: HashMap<(i32, i64), (Option<Timestamp>, Option<Timestamp>)>,
    pub(crate) overrides: HashMap<i32, Override>,
    pub(crate) schedules: HashMap<i32, Schedule>,
    pub(crate) lamps: HashMap<i32, LampState>,
    /// Lamps seen dark while they should burn, per cabinet.
    pub(crate) dark: HashMap<i32, HashSet<i32>>,
    /// Cabinets whose last report said the supply was lost.
    pub(crate) supply_lost: HashSet<i32>,
    pub(crate) nights: HashMap<i32, Night>,
    /// Last positions per route and vehicle.
    pub(crate) tracks: HashMap<i32, HashMap<i32, Track>>,
    /// Vehicle pairs found close together, (the one whose outage it is, the other), and
    /// since when.
    pub(crate) bunched: HashMap<(i32, i32), Closeness>,
    /// Confirmed pairs found apart: since when they had been close, and when they parted.
    pub(crate) parted: HashMap<(i32, i32), (Timestamp, Timestamp)>,
    /// Recent raises per alarm, for chattering.
    pub(crate) raises: HashMap<Key, VecDeque<Timestamp>>,
    /// Outages held open because they chatter.
    pub(crate) held: HashSet<Key>,
    /// Raised inside a maintenance window: opened when the window ends if still faulty.
    pub(crate) deferred: HashSet<Key>,
    pub(crate) evidence: HashMap<Key, Evidence>,
    /// Inputs waiting for the stream to pass their time.
    pub(crate) queue: BinaryHeap<std::cmp::Reverse<Queued>>,
    /// Arrival counter: the last tie-break of the queue's order.
    pub(crate) arrivals: u64,
    /// Instants at which time alone decides something, in order.
    pub(crate) deadlines: BTreeSet<Due>,
    /// Everything up to here has been judged.
    pub(crate) horizon: Option<Timestamp>,
    /// The instant being judged (the horizon between calls).
    pub(crate) clock: Option<Timestamp>,
    /// Per device, the newest (time, rank) judged: older inputs are redeliveries or stale.
    pub(crate) judged: HashMap<i32, (Timestamp, u8)>,
    /// The engine generation the time-driven deadlines were computed for.
    pub(crate) generation: u64,
    /// Raises not opened because of a maintenance window.
    pub maintenance_suppressed: u64,
    /// Rows judged after the horizon had passed their time (in order for their device).
    pub late: u64,
    /// Rows not judged: a redelivery, or older than what their device already said.
    pub dropped: u64,
    /// Rows judged before the stream passed them because the queue was full.
    pub forced: u64,
}

impl State {
    /// Outages currently open, for the driver's restart check and tests.
    pub fn open(&self) -> impl Iterator<Item = (i32, OutageKind)> + '_ {
        self.open.keys().copied()
    }

    /// Marks an outage as open (rebuilding state from the database after a restart or a
    /// takeover), `at` its latest step the rules gave it (opened, raised again, found
    /// chattering): nothing decided of it from here goes before that step, even a late
    /// row of its device that the engine which took that step had already passed.
    pub fn restore_open(&mut self, asset: i32, kind: OutageKind, at: Timestamp) {
        self.open.insert((asset, kind), at);
        self.conditions.insert((asset, kind), Condition::Active);
    }

    /// Forgets a fault seen but not yet confirmed (a pending condition); an active one
    /// stays.
    pub(crate) fn forget_pending(&mut self, key: Key) {
        if matches!(self.conditions.get(&key), Some(Condition::Pending(_))) {
            self.conditions.remove(&key);
        }
    }

    pub(crate) fn is_active(&self, key: Key) -> bool {
        self.conditions.get(&key).is_some_and(|c| c.is_active())
    }

    /// Everything up to here has been judged.
    pub fn horizon(&self) -> Option<Timestamp> {
        self.horizon
    }

    /// The instant being judged.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.unwrap_or(Timestamp(i64::MIN))
    }
}

/// A lamp's relay as last reported, and its recent changes that nothing explains.
#[derive(Debug, Clone, Default)]
pub(crate) struct LampState {
    pub(crate) on: Option<bool>,
    pub(crate) switches: VecDeque<Timestamp>,
    /// Whether it should burn, as judged at its last relay change.
    pub(crate) should_at_switch: Option<bool>,
}

/// A water meter's current night window: the lowest flow seen in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Night {
    pub(crate) night: i64,
    pub(crate) readings: u32,
    pub(crate) min_flow: f64,
    pub(crate) judged: bool,
}

/// A vehicle's position at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    pub(crate) ts: Timestamp,
    pub(crate) lon: f64,
    pub(crate) lat: f64,
}

/// A pair's gap in metres at the instant both were known, and now (less what setting the
/// other ahead can get wrong; none when it cannot be set ahead).
pub(crate) type Gaps = (f64, Option<f64>);

/// Two vehicles found close: since when (without a break), last judged, and how close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closeness {
    pub(crate) gap: f64,
    pub(crate) since: Timestamp,
    pub(crate) last: Timestamp,
}

/// A vehicle's last two positions: where it was between them is known, not guessed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Track {
    pub(crate) last: Position,
    pub(crate) before: Option<Position>,
    /// The speed it reported last, m/s.
    pub(crate) speed: f64,
}

impl Track {
    /// Where it was at `ts`, if `ts` falls between its last two positions.
    pub(crate) fn at(&self, ts: Timestamp) -> Option<Position> {
        let (a, b) = (self.before?, self.last);
        if ts < a.ts || ts > b.ts {
            return None;
        }
        let span = (b.ts.micros() - a.ts.micros()) as f64;
        let f = if span > 0.0 {
            (ts.micros() - a.ts.micros()) as f64 / span
        } else {
            1.0
        };
        Some(Position {
            ts,
            lon: a.lon + f * (b.lon - a.lon),
            lat: a.lat + f * (b.lat - a.lat),
        })
    }

    /// Where it would be at `ts` (after its last position, at most `max_age_us` later) if it
    /// kept the speed and heading of its last two positions, and how far it can have gone
    /// meanwhile (so how wrong that can be, at a turn or a terminus: twice that at most).
    pub(crate) fn ahead(&self, ts: Timestamp, max_age_us: i64) -> Option<(Position, f64)> {
        let (a, b) = (self.before?, self.last);
        let span = (b.ts.micros() - a.ts.micros()) as f64;
        let gone = ts.micros() - b.ts.micros();
        if span <= 0.0 || gone < 0 || gone > max_age_us {
            return None;
        }
        let f = gone as f64 / span;
        let position = Position {
            ts,
            lon: b.lon + f * (b.lon - a.lon),
            lat: b.lat + f * (b.lat - a.lat),
        };
        let travel = distance(&a, &b).max(self.speed * span / 1e6);
        Some((position, travel))
    }
}

const METRES_PER_DEGREE: f64 = 111_320.0;

/// Distance in metres from a point to a polyline (lon, lat), on a local flat projection
/// (good to a fraction of a percent over a city).
pub fn distance_to_line(lon: f64, lat: f64, line: &[(f64, f64)]) -> f64 {
    let k = lat.to_radians().cos();
    let xy = |p: (f64, f64)| {
        (
            (p.0 - lon) * k * METRES_PER_DEGREE,
            (p.1 - lat) * METRES_PER_DEGREE,
        )
    };
    let mut best = f64::INFINITY;
    for w in line.windows(2) {
        let (a, b) = (xy(w[0]), xy(w[1]));
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (x, y) = (a.0 + t * dx, a.1 + t * dy);
        best = best.min((x * x + y * y).sqrt());
    }
    if line.len() == 1 {
        let (x, y) = xy(line[0]);
        best = (x * x + y * y).sqrt();
    }
    best
}

pub(crate) fn distance(a: &Position, b: &Position) -> f64 {
    distance_to_line(a.lon, a.lat, &[(b.lon, b.lat)])
}

/// What the engine is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A committed row.
    Row(Observation),
    /// A device acknowledged a command: what it should do from `from` on (the command's
    /// issue or the acknowledgement, whichever came first, so readings taken while the
    /// device was switching are judged against what it was told).
    Instructed {
        asset: i32,
        from: Timestamp,
        instruction: Instruction,
    },
}

/// Among inputs of one instant: what a device was told first, then what it says of itself,
/// then its readings, then its events.
pub fn rank(record: RecordType) -> u8 {
    match record {
        RecordType::CmdAck => 0,
        RecordType::Status => 1,
        RecordType::Light | RecordType::Cabinet | RecordType::Meter | RecordType::Vehicle => 2,
        RecordType::Event => 3,
    }
}

impl Input {
    /// Its place in the stream: time, rank, device.
    pub fn key(&self) -> (Timestamp, u8, i32) {
        match self {
            Input::Row(o) => (o.row.ts, rank(o.record), o.device_id),
            Input::Instructed { asset, from, .. } => (*from, 0, *asset),
        }
    }
}

/// An input waiting for the horizon.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) key: (Timestamp, u8, i32),
    pub(crate) arrival: u64,
    /// Boxed: the queue holds up to `[stream] max_queued` entries and reorders them at
    /// every push and pop, so an entry is kept to its key and a pointer.
    pub(crate) input: Box<Input>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.arrival).cmp(&(other.key, other.arrival))
    }
}

/// An instant at which time alone may decide something: (when, what, asset, kind). At one
/// instant, inputs go first (a reading at the very end of a silence window is in time),
/// then cabinets' silences (so that they explain their lamps'), then the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Due(
    pub(crate) Timestamp,
    pub(crate) DueKind,
    pub(crate) i32,
    pub(crate) OutageKind,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DueKind {
    CabinetSilence,
    Silence,
    Clear,
    Release,
    Deferred,
}

impl Due {
    pub(crate) fn silence(at: Timestamp, asset: i32, kind: OutageKind, cabinet: bool) -> Due {
        let what = if cabinet {
            DueKind::CabinetSilence
        } else {
            DueKind::Silence
        };
        Due(at, what, asset, kind)
    }

    pub(crate) fn clear(at: Timestamp, key: Key) -> Due {
        Due(at, DueKind::Clear, key.0, key.1)
    }

    pub(crate) fn release(at: Timestamp, key: Key) -> Due {
        Due(at, DueKind::Release, key.0, key.1)
    }

    pub(crate) fn deferred(at: Timestamp, key: Key) -> Due {
        Due(at, DueKind::Deferred, key.0, key.1)
    }

    /// Deadlines set by a condition itself (the others follow from the rules, the devices
    /// and the maintenance windows, and are computed again when those change).
    pub(crate) fn is_clear(&self) -> bool {
        self.1 == DueKind::Clear
    }
}
