//! Citizen reports (Open311) and the notifications of changes.
//!
//! Migration 8 holds both:
//!
//! - **Change notifications.** Statement-level AFTER triggers on `outage_events`,
//!   `work_order_events` and `commands` send one `pg_notify` per statement on the channel
//!   [`CHANGES_CHANNEL`], with the ids of what changed (at most [`NOTIFY_IDS`]), or, for a
//!   larger statement, only how many changed and in which tenants. A set of 20 000 outage
//!   decisions written in a few statements is a few notifications, not 20 000. The hub's
//!   one listener (`crate::changes`) reads the rows behind the ids and fans them out.
//! - **Service requests**: what citizens reported, where, and the device, outage and
//!   work order it was linked to. Their status is read from the work order, never copied.

use crate::handles::{Actions, Reads};
use chrono::{DateTime, Utc};
use model::{OutageKind, Severity, WorkOrderState};
use serde_json::json;
use tokio_postgres::Row;

use crate::audit::{append, AuditEntry};
use crate::error::named;
use crate::StoreError;

/// The channel the change triggers notify on.
pub const CHANGES_CHANNEL: &str = "cityhub_changes";

/// The most ids one notification carries; a statement that changes more sends a count
/// and its tenants instead (the listener then asks clients to refetch).
pub const NOTIFY_IDS: i64 = 100;

/// Migration 8: service requests and change notifications.
pub const MIGRATION: &str = r#"
-- Change notifications. One per statement: the ids changed, or a count and the tenants
-- when there are more than 100 (pg_notify payloads are limited to 8000 bytes, and a
-- storm is better answered with "refetch" than with 20 000 events).
CREATE FUNCTION notify_outage_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM changed WHERE transition <> 'occurred again';
    IF n = 0 THEN
        RETURN NULL;
    ELSIF n <= 100 THEN
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'outage', 'ids',
            (SELECT json_agg(id ORDER BY id) FROM changed WHERE transition <> 'occurred again'))::text);
    ELSE
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'outage', 'bulk', n, 'tenants',
            (SELECT json_agg(DISTINCT d.tenant_id) FROM changed c
             JOIN outages o ON o.id = c.outage_id JOIN devices d ON d.id = o.device_id))::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER outage_events_notify AFTER INSERT ON outage_events
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION notify_outage_events();

CREATE FUNCTION notify_work_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM changed;
    IF n = 0 THEN
        RETURN NULL;
    ELSIF n <= 100 THEN
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'work_order', 'ids',
            (SELECT json_agg(id ORDER BY id) FROM changed))::text);
    ELSE
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'work_order', 'bulk', n, 'tenants',
            (SELECT json_agg(DISTINCT d.tenant_id) FROM changed c
             JOIN work_orders w ON w.id = c.work_order_id JOIN devices d ON d.id = w.device_id))::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER work_order_events_notify AFTER INSERT ON work_order_events
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION notify_work_order_events();

-- Commands: a new command (pending), and every change of status.
CREATE FUNCTION notify_commands(changed_ids text[], changed_devices int4[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := coalesce(array_length(changed_ids, 1), 0);
BEGIN
    IF n = 0 THEN
        RETURN;
    ELSIF n <= 100 THEN
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'command', 'ids', changed_ids)::text);
    ELSE
        PERFORM pg_notify('cityhub_changes', json_build_object('t', 'command', 'bulk', n, 'tenants',
            (SELECT json_agg(DISTINCT d.tenant_id) FROM devices d WHERE d.id = ANY (changed_devices)))::text);
    END IF;
END
$$;
CREATE FUNCTION notify_commands_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_commands(
        (SELECT array_agg(id ORDER BY id) FROM changed),
        (SELECT array_agg(DISTINCT device_id) FROM changed));
    RETURN NULL;
END
$$;
CREATE FUNCTION notify_commands_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_commands(
        (SELECT array_agg(n.id ORDER BY n.id) FROM changed n JOIN previous p ON p.id = n.id
         WHERE n.status IS DISTINCT FROM p.status),
        (SELECT array_agg(DISTINCT n.device_id) FROM changed n JOIN previous p ON p.id = n.id
         WHERE n.status IS DISTINCT FROM p.status));
    RETURN NULL;
END
$$;
CREATE TRIGGER commands_notify_insert AFTER INSERT ON commands
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION notify_commands_inserted();
CREATE TRIGGER commands_notify_update AFTER UPDATE ON commands
    REFERENCING OLD TABLE AS previous NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION notify_commands_updated();

-- What citizens reported (Open311 GeoReport v2). No personal data of the reporter is
-- kept: the spec's e-mail, names and phone are accepted and dropped.
CREATE TABLE service_requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    service_code text NOT NULL,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    address_string text,
    description text,
    media_url text,
    -- The device found near the place, the outage it already had (if any), and the work
    -- order the report joined or opened; the request's status is that order's.
    device_id integer NOT NULL REFERENCES devices (id),
    outage_id bigint REFERENCES outages (id),
    work_order_id bigint NOT NULL REFERENCES work_orders (id),
    requested_at timestamptz NOT NULL,
    submitted_by text NOT NULL
);
CREATE INDEX service_requests_tenant ON service_requests (tenant_id, requested_at);
CREATE INDEX service_requests_work_order ON service_requests (work_order_id);
-- The nearest device of a kind: a latitude band first.
CREATE INDEX devices_kind_lat ON devices (tenant_id, kind, lat);
"#;

/// A citizen's report to record.
#[derive(Debug, Clone)]
pub struct NewServiceRequest<'a> {
    pub tenant_id: i32,
    pub service_code: &'a str,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<&'a str>,
    pub description: Option<&'a str>,
    pub media_url: Option<&'a str>,
    /// Device kind the service concerns (`light`, `meter`, `cabinet`).
    pub device_kind: model::Kind,
    /// For meters: the medium (`water`), when the service names one.
    pub medium: Option<&'a str>,
    /// Outage kinds that are this problem, on the device itself.
    pub outage_kinds: &'a [OutageKind],
    /// Outage kinds that are this problem when found on the device's cabinet (a lamp
    /// dark because its cabinet lost supply).
    pub cabinet_outage_kinds: &'a [OutageKind],
    /// How far the device may be, in metres.
    pub radius_m: f64,
    /// The team an inspection goes to.
    pub team: &'a str,
    /// Hours to inspect.
    pub inspection_hours: i32,
    pub at: DateTime<Utc>,
    /// Recorded as the submitter in events and the audit log.
    pub actor: &'a str,
}

/// What became of a new report.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub id: i64,
    pub device: String,
    pub distance_m: f64,
    pub outage_id: Option<i64>,
    pub work_order_id: i64,
    /// The report joined an existing work order (the problem was known).
    pub joined: bool,
}

/// A stored report with the state of its work order.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequestRow {
    pub id: i64,
    pub tenant: String,
    pub service_code: String,
    pub lat: f64,
    pub lon: f64,
    pub address: Option<String>,
    pub description: Option<String>,
    pub media_url: Option<String>,
    pub device: String,
    pub outage_id: Option<i64>,
    pub work_order_id: i64,
    pub work_order_state: WorkOrderState,
    pub team: String,
    /// When the work order is due.
    pub due_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    /// The newest of the report and its work order's events.
    pub updated_at: DateTime<Utc>,
}

/// Which reports to list.
#[derive(Debug, Clone, Default)]
pub struct ServiceRequestQuery<'a> {
    pub tenant_id: i32,
    pub ids: Option<&'a [i64]>,
    pub service_code: Option<&'a str>,
    /// Requested at or after / before.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `Some(true)`: closed only; `Some(false)`: open only.
    pub closed: Option<bool>,
    pub limit: i64,
}

/// The names of `kinds`, as the outages table holds them.
fn names(kinds: &[OutageKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.as_str()).collect()
}

/// Work order states in which a report counts as closed: the repair was confirmed.
const CLOSED_STATES: [WorkOrderState; 2] = [WorkOrderState::Verified, WorkOrderState::Closed];

/// The approximate distance in metres between two WGS 84 points (equirectangular;
/// within a few hundred metres the error is far below a GPS fix's).
const DISTANCE_SQL: &str = "(6371000.0 * sqrt(power(radians(d.lat - $LAT), 2)
    + power(radians(d.lon - $LON) * cos(radians($LAT)), 2)))";

const REQUEST_COLUMNS: &str = "r.id, t.slug, r.service_code, r.lat, r.lon, r.address_string,
    r.description, r.media_url, d.ext_id, r.outage_id, r.work_order_id, w.state, w.team,
    r.requested_at, w.due_at,
    greatest(r.requested_at, (SELECT max(e.at) FROM work_order_events e
                              WHERE e.work_order_id = w.id))";

fn request_row(r: &Row) -> Result<ServiceRequestRow, StoreError> {
    Ok(ServiceRequestRow {
        id: r.get(0),
        tenant: r.get(1),
        service_code: r.get(2),
        lat: r.get(3),
        lon: r.get(4),
        address: r.get(5),
        description: r.get(6),
        media_url: r.get(7),
        device: r.get(8),
        outage_id: r.get(9),
        work_order_id: r.get(10),
        work_order_state: named(r, 11, "work order state", WorkOrderState::parse)?,
        team: r.get(12),
        requested_at: r.get(13),
        due_at: r.get(14),
        updated_at: r.get(15),
    })
}

impl Actions {
    /// Records a citizen's report in one transaction with its audit entry: finds the
    /// nearest device of the service's kind within the radius (`Ok(None)` when there is
    /// none); if it (or, for a lamp, its cabinet) has an open outage that is this
    /// problem, links the report to it and to its active work order (opening one of the
    /// outage's kind if it has none); otherwise joins the device's active inspection or
    /// opens one.
    pub async fn record_service_request(
        &mut self,
        r: &NewServiceRequest<'_>,
    ) -> Result<Option<Recorded>, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a service request"))?;
        // Degrees of latitude and longitude the radius spans (a band for the index).
        let dlat = r.radius_m / 111_195.0;
        let dlon = dlat / r.lat.to_radians().cos().abs().max(0.01);
        let distance = DISTANCE_SQL
            .replace("$LAT", "$2::float8")
            .replace("$LON", "$3::float8");
        let nearest = tx
            .query_opt(
                &format!(
                    "SELECT d.id, d.ext_id, d.cabinet, {distance} AS dist FROM devices d
                     WHERE d.tenant_id = $1 AND d.kind = $4
                       AND ($5::text IS NULL OR d.medium = $5)
                       AND d.lat BETWEEN $2 - $6 AND $2 + $6
                       AND d.lon BETWEEN $3 - $7 AND $3 + $7
                     ORDER BY dist, d.id LIMIT 1"
                ),
                &[
                    &r.tenant_id,
                    &r.lat,
                    &r.lon,
                    &r.device_kind.as_str(),
                    &r.medium,
                    &dlat,
                    &dlon,
                ],
            )
            .await
            .map_err(StoreError::db("finding the nearest device"))?;
        let Some(nearest) = nearest else {
            return Ok(None);
        };
        let (device_id, ext_id, cabinet, dist): (i32, String, Option<String>, f64) = (
            nearest.get(0),
            nearest.get(1),
            nearest.get(2),
            nearest.get(3),
        );
        if dist > r.radius_m {
            return Ok(None);
        }
        // The outage that is this problem: on the device, else on its cabinet.
        let outage = tx
            .query_opt(
                &format!(
                    "SELECT o.id, o.device_id, o.kind, o.severity FROM outages o
                 WHERE o.state IN {active}
                   AND ((o.device_id = $1 AND o.kind = ANY($2))
                     OR (o.kind = ANY($3) AND o.device_id = (
                           SELECT c.id FROM devices c
                           WHERE c.tenant_id = $4 AND c.ext_id = $5 AND c.kind = {cabinet})))
                 ORDER BY (o.device_id = $1) DESC, o.opened_at, o.id LIMIT 1",
                    active = *crate::sql::OUTAGE_ACTIVE,
                    cabinet = crate::sql::lit(model::Kind::Cabinet)
                ),
                &[
                    &device_id,
                    &names(r.outage_kinds),
                    &names(r.cabinet_outage_kinds),
                    &r.tenant_id,
                    &cabinet,
                ],
            )
            .await
            .map_err(StoreError::db("finding the device's outages"))?;
        let outage: Option<(i64, i32, String, String)> =
            outage.map(|o| (o.get(0), o.get(1), o.get(2), o.get(3)));
        let (order_device, order_kind, severity, outage_id) = match &outage {
            Some((id, dev, kind, severity)) => (*dev, kind.clone(), severity.clone(), Some(*id)),
            None => (
                device_id,
                model::INSPECTION.to_owned(),
                Severity::Minor.as_str().to_owned(),
                None,
            ),
        };
        let existing = tx
            .query_opt(
                "SELECT id FROM work_orders WHERE device_id = $1 AND kind = $2 AND state <> $3
                 FOR UPDATE",
                &[&order_device, &order_kind, &WorkOrderState::Closed.as_str()],
            )
            .await
            .map_err(StoreError::db("reading a work order"))?;
        let service_note = format!("citizen report ({})", r.service_code);
        let (work_order_id, joined) = match existing {
            Some(row) => (row.get::<_, i64>(0), true),
            None => {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO work_orders (outage_id, device_id, kind, severity, team, state, opened_at, due_at)
                         VALUES ($1, $2, $3, $4, $5, $8, $6::timestamptz,
                                 $6::timestamptz + make_interval(hours => $7::int4))
                         RETURNING id",
                        &[
                            &outage_id,
                            &order_device,
                            &order_kind,
                            &severity,
                            &r.team,
                            &r.at,
                            &r.inspection_hours,
                            &WorkOrderState::New.as_str(),
                        ],
                    )
                    .await
                    .map_err(StoreError::db("opening a work order for a report"))?
                    .get(0);
                tx.execute(
                    "INSERT INTO work_order_events (work_order_id, at, actor, from_state, to_state, detail)
                     VALUES ($1, $2, $3, NULL, $5, $4)",
                    &[&id, &r.at, &r.actor, &service_note, &WorkOrderState::New.as_str()],
                )
                .await
                .map_err(StoreError::db("recording a work order event"))?;
                (id, false)
            }
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO service_requests (tenant_id, service_code, lat, lon, address_string,
                     description, media_url, device_id, outage_id, work_order_id, requested_at, submitted_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &r.tenant_id,
                    &r.service_code,
                    &r.lat,
                    &r.lon,
                    &r.address,
                    &r.description,
                    &r.media_url,
                    &device_id,
                    &outage_id,
                    &work_order_id,
                    &r.at,
                    &r.actor,
                ],
            )
            .await
            .map_err(StoreError::db("recording a service request"))?
            .get(0);
        let tenant: String = tx
            .query_one("SELECT slug FROM tenants WHERE id = $1", &[&r.tenant_id])
            .await
            .map_err(StoreError::db("reading a tenant"))?
            .get(0);
        append(
            &tx,
            &AuditEntry {
                actor: r.actor.to_owned(),
                action: "service_request.create".into(),
                target: format!("service_request/{id}"),
                detail: json!({
                    "tenant": tenant,
                    "service_code": r.service_code,
                    "device": ext_id,
                    "distance_m": (dist * 10.0).round() / 10.0,
                    "outage": outage_id,
                    "work_order": work_order_id,
                    "joined": joined,
                }),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a service request"))?;
        Ok(Some(Recorded {
            id,
            device: ext_id,
            distance_m: dist,
            outage_id,
            work_order_id,
            joined,
        }))
    }
}

impl Reads {
    /// Reports of one tenant, newest first.
    pub async fn service_requests(
        &self,
        q: &ServiceRequestQuery<'_>,
    ) -> Result<Vec<ServiceRequestRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {REQUEST_COLUMNS}
                     FROM service_requests r
                     JOIN tenants t ON t.id = r.tenant_id
                     JOIN devices d ON d.id = r.device_id
                     JOIN work_orders w ON w.id = r.work_order_id
                     WHERE r.tenant_id = $1
                       AND ($2::int8[] IS NULL OR r.id = ANY($2))
                       AND ($3::text IS NULL OR r.service_code = $3)
                       AND ($4::timestamptz IS NULL OR r.requested_at >= $4)
                       AND ($5::timestamptz IS NULL OR r.requested_at < $5)
                       AND ($6::bool IS NULL OR (w.state = ANY($7)) = $6)
                     ORDER BY r.requested_at DESC, r.id DESC
                     LIMIT $8"
                ),
                &[
                    &q.tenant_id,
                    &q.ids,
                    &q.service_code,
                    &q.from,
                    &q.to,
                    &q.closed,
                    &CLOSED_STATES.map(WorkOrderState::as_str).as_slice(),
                    &q.limit,
                ],
            )
            .await
            .map_err(StoreError::db("listing service requests"))?;
        rows.iter().map(request_row).collect()
    }

    /// The id of a tenant by slug, `None` when there is none.
    pub async fn tenant_id(&self, slug: &str) -> Result<Option<i32>, StoreError> {
        Ok(self
            .client()
            .query_opt("SELECT id FROM tenants WHERE slug = $1", &[&slug])
            .await
            .map_err(StoreError::db("reading a tenant"))?
            .map(|r| r.get(0)))
    }
}
