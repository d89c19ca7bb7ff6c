//! What a tenant's residents may know of the works in their city, for its public feeds:
//! dark streets and water leaks now (active outages, one item per street, or per district
//! where the inventory names no street, with where their repair stands and its deadline)
//! and planned works (maintenance windows not over, with their dates).
//!
//! Nothing here names a person or says why in anyone's words: no user, team, assignee,
//! comment or maintenance reason is read, and no device id is given out. Places are
//! rounded to about 100 m. A cabinet without mains is a dark street where its lamps are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use model::{OutageKind, WorkOrderState};

use crate::handles::Reads;
use crate::sql::{lit, OUTAGE_ACTIVE};
use crate::StoreError;

/// What residents are told an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublicKind {
    /// Lamps out: failed, or their cabinet without mains.
    DarkStreet,
    WaterLeak,
    PlannedWorks,
}

impl PublicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicKind::DarkStreet => "dark_street",
            PublicKind::WaterLeak => "water_leak",
            PublicKind::PlannedWorks => "planned_works",
        }
    }

    /// The public kind of an outage kind; none for what residents do not see (a bus off
    /// its route, a meter's tamper flag, a silent controller).
    fn of(kind: OutageKind) -> Option<(PublicKind, &'static str)> {
        match kind {
            OutageKind::LampFailure => Some((PublicKind::DarkStreet, "lamp")),
            OutageKind::CabinetSupplyLoss => Some((PublicKind::DarkStreet, "power_supply")),
            OutageKind::Leak => Some((PublicKind::WaterLeak, "leak")),
            _ => None,
        }
    }
}

/// Where an item stands, as residents are told, from the least to the most advanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PublicStatus {
    /// Known to the city; nobody is on it yet.
    Reported,
    /// Someone is on it (a crew is assigned, or the works are planned).
    Accepted,
    InWork,
    /// The crew says it is done (the fault may show a while longer).
    Done,
}

impl PublicStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Reported => "reported",
            PublicStatus::Accepted => "accepted",
            PublicStatus::InWork => "in_work",
            PublicStatus::Done => "done",
        }
    }

    /// Where a repair stands from its work order's state; reported without one.
    pub fn of_work_order(state: Option<WorkOrderState>) -> PublicStatus {
        match state {
            None | Some(WorkOrderState::New) => PublicStatus::Reported,
            Some(WorkOrderState::Assigned | WorkOrderState::Reopened) => PublicStatus::Accepted,
            Some(WorkOrderState::InProgress) => PublicStatus::InWork,
            Some(WorkOrderState::Done | WorkOrderState::Verified | WorkOrderState::Closed) => {
                PublicStatus::Done
            }
        }
    }
}

/// One item of a tenant's public feed.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicWork {
    pub kind: PublicKind,
    /// Why the street is dark (`lamp`, `power_supply`), `leak`; none for planned works.
    pub cause: Option<&'static str>,
    /// The least advanced of its faults.
    pub status: PublicStatus,
    /// Since when: its first fault, or the works' start.
    pub since: DateTime<Utc>,
    /// The latest deadline of its repairs (none while one has no work order with a
    /// deadline), or the works' end.
    pub expected_end: Option<DateTime<Utc>>,
    pub district: Option<String>,
    pub street: Option<String>,
    /// Devices affected: those with a fault (a cabinet without mains: its lamps), or
    /// those planned works cover.
    pub count: i64,
    /// The middle of its devices, to about 100 m; none for works over the whole city.
    pub at: Option<(f64, f64)>,
    /// The maintenance window, for planned works.
    pub id: Option<i64>,
    /// The inventory ids of its faulty devices (a cabinet without mains: its lamps), at
    /// most [`MAX_DEVICES`], in order; none for planned works. Shown only where the
    /// tenant allows it.
    pub devices: Vec<String>,
}

impl PublicWork {
    /// What names the item from one answer to the next: its kind, cause and place, or its
    /// maintenance window.
    pub fn key(&self) -> String {
        match self.id {
            Some(id) => format!("{}/{id}", self.kind.as_str()),
            None => format!(
                "{}/{}/{}/{}",
                self.kind.as_str(),
                self.cause.unwrap_or_default(),
                self.district.as_deref().unwrap_or_default(),
                self.street.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// A published tenant, as its public page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicTenant {
    pub id: i32,
    /// Its name for people (the slug is for addresses).
    pub name: String,
}

/// A place to about 100 m (three decimals of a degree): a street's dark lamps or a leak
/// are found there, not the one house whose meter it is.
fn coarse(lon: f64, lat: f64) -> (f64, f64) {
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    (round(lon), round(lat))
}

/// Faults of one street (or district) and kind, while they are put together.
struct Group {
    status: PublicStatus,
    since: DateTime<Utc>,
    expected_end: Option<DateTime<Utc>>,
    /// Faults without a deadline: the group then has none.
    open_ended: bool,
    count: i64,
    lon: f64,
    lat: f64,
    devices: Vec<String>,
}

/// The most device ids an item lists.
pub const MAX_DEVICES: usize = 200;

impl Reads {
    /// The tenant `slug`, if there is one (one row by its key: every public page asks).
    pub async fn public_tenant(&self, slug: &str) -> Result<Option<PublicTenant>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT id, name FROM tenants WHERE slug = $1", &[&slug])
            .await
            .map_err(StoreError::db("reading a tenant"))?;
        Ok(row.map(|r| PublicTenant {
            id: r.get(0),
            name: r.get(1),
        }))
    }

    /// Where tenant `tenant_id`'s devices are: west, south, east, north; none without
    /// devices. It reads every device: for the base map's answer, built once a while.
    pub async fn tenant_extent(&self, tenant_id: i32) -> Result<Option<[f64; 4]>, StoreError> {
        let r = self
            .client()
            .query_one(
                "SELECT min(lon), min(lat), max(lon), max(lat) FROM devices WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await
            .map_err(StoreError::db("reading where a tenant's devices are"))?;
        let corners: [Option<f64>; 4] = [r.get(0), r.get(1), r.get(2), r.get(3)];
        Ok(match corners {
            [Some(w), Some(s), Some(e), Some(n)] => Some([w, s, e, n]),
            _ => None,
        })
    }

    /// Tenant `tenant_id`'s districts, as its inventory names them, in order.
    pub async fn districts(&self, tenant_id: i32) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT DISTINCT district FROM devices
                 WHERE tenant_id = $1 AND district IS NOT NULL ORDER BY district",
                &[&tenant_id],
            )
            .await
            .map_err(StoreError::db("listing districts"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Tenant `tenant_id`'s public items at `now`: its faults residents notice, grouped,
    /// then its planned works, each list earliest first.
    pub async fn public_works(
        &self,
        tenant_id: i32,
        now: DateTime<Utc>,
    ) -> Result<Vec<PublicWork>, StoreError> {
        let kinds: Vec<&str> = OutageKind::ALL
            .iter()
            .filter(|k| PublicKind::of(**k).is_some())
            .map(|k| k.as_str())
            .collect();
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT o.kind, o.opened_at, p.district, nullif(btrim(p.props->>'street'), ''),
                            p.lon, p.lat, w.state, w.due_at, p.ext_id
                     FROM outages o JOIN devices d ON d.id = o.device_id
                     -- Where residents see it: a cabinet without mains, on its lamps' streets.
                     LEFT JOIN devices l ON o.kind = {supply_loss} AND l.tenant_id = d.tenant_id
                         AND l.kind = {light} AND l.cabinet = d.ext_id
                     JOIN devices p ON p.id = coalesce(l.id, d.id)
                     LEFT JOIN LATERAL (
                         SELECT state, due_at FROM work_orders w
                         WHERE w.device_id = o.device_id AND w.kind = o.kind AND w.state <> {closed}
                         ORDER BY w.id DESC LIMIT 1
                     ) w ON true
                     WHERE d.tenant_id = $1 AND o.state IN {active} AND o.kind = ANY($2)",
                    closed = lit(WorkOrderState::Closed),
                    active = *OUTAGE_ACTIVE,
                    supply_loss = lit(OutageKind::CabinetSupplyLoss),
                    light = lit(model::Kind::Light),
                ),
                &[&tenant_id, &kinds],
            )
            .await
            .map_err(StoreError::db("reading the public works"))?;
        type Key = (PublicKind, &'static str, Option<String>, Option<String>);
        let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
        for r in &rows {
            let Some((kind, cause)) = OutageKind::parse(r.get(0)).and_then(PublicKind::of) else {
                continue;
            };
            let state: Option<&str> = r.get(6);
            let status = PublicStatus::of_work_order(state.and_then(WorkOrderState::parse));
            let due: Option<DateTime<Utc>> = r.get(7);
            let opened: DateTime<Utc> = r.get(1);
            let (lon, lat): (f64, f64) = (r.get(4), r.get(5));
            let g = groups
                .entry((kind, cause, r.get(2), r.get(3)))
                .or_insert(Group {
                    status,
                    since: opened,
                    expected_end: None,
                    open_ended: false,
                    count: 0,
                    lon: 0.0,
                    lat: 0.0,
                    devices: Vec::new(),
                });
            g.status = g.status.min(status);
            g.since = g.since.min(opened);
            g.expected_end = g.expected_end.max(due);
            g.open_ended |= due.is_none();
            g.count += 1;
            g.lon += lon;
            g.lat += lat;
            if g.devices.len() < MAX_DEVICES {
                g.devices.push(r.get(8));
            }
        }
        let mut out: Vec<PublicWork> = groups
            .into_iter()
            .map(|((kind, cause, district, street), g)| PublicWork {
                kind,
                cause: Some(cause),
                status: g.status,
                since: g.since,
                expected_end: g.expected_end.filter(|_| !g.open_ended),
                district,
                street,
                count: g.count,
                at: Some(coarse(g.lon / g.count as f64, g.lat / g.count as f64)),
                id: None,
                devices: {
                    let mut d = g.devices;
                    d.sort();
                    d.dedup();
                    d
                },
            })
            .collect();
        out.sort_by_key(|a| (a.since, a.kind));
        out.extend(self.planned_works(tenant_id, now).await?);
        Ok(out)
    }

    /// Maintenance windows of `tenant_id` not over at `now`, earliest start first, each
    /// at the middle of the devices it covers (`maintenance::window_covers`); one over a
    /// whole tenant has no place.
    async fn planned_works(
        &self,
        tenant_id: i32,
        now: DateTime<Utc>,
    ) -> Result<Vec<PublicWork>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT w.starts_at, w.ends_at, w.scope = 'tenant',
                        CASE WHEN count(DISTINCT d.district) = 1 THEN min(d.district) END,
                        CASE WHEN count(DISTINCT nullif(btrim(d.props->>'street'), '')) = 1
                            THEN min(nullif(btrim(d.props->>'street'), '')) END,
                        count(d.id), avg(d.lon), avg(d.lat), w.id
                     FROM maintenance_windows w LEFT JOIN devices d ON {covers}
                     WHERE w.tenant_id = $1 AND w.ends_at > $2
                     GROUP BY w.id
                     ORDER BY w.starts_at, w.id",
                    covers = crate::maintenance::window_covers()
                ),
                &[&tenant_id, &now],
            )
            .await
            .map_err(StoreError::db("reading the planned works"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let starts: DateTime<Utc> = r.get(0);
                let city_wide: bool = r.get(2);
                let place = match (r.get::<_, Option<f64>>(6), r.get::<_, Option<f64>>(7)) {
                    (Some(lon), Some(lat)) if !city_wide => Some(coarse(lon, lat)),
                    _ => None,
                };
                PublicWork {
                    kind: PublicKind::PlannedWorks,
                    cause: None,
                    status: if starts > now {
                        PublicStatus::Accepted
                    } else {
                        PublicStatus::InWork
                    },
                    since: starts,
                    expected_end: Some(r.get(1)),
                    district: r.get(3),
                    street: r.get(4),
                    count: r.get(5),
                    at: place,
                    id: Some(r.get(8)),
                    devices: Vec::new(),
                }
            })
            .collect())
    }
}
