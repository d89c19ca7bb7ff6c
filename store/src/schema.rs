//! Tables, generated where they follow the contract, and migrations.
//!
//! The reading tables are generated from `model::RecordType::fields` so the contract and
//! the columns cannot drift apart. Each is partitioned by time: a TimescaleDB hypertable
//! when the extension is available, otherwise native range partitioning by day
//! (see [`crate::partitions`]).

use model::{FieldType, RecordType};

/// Which time-partitioning engine the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoragePath {
    TimescaleDb,
    Partitioned,
}

impl StoragePath {
    pub fn as_str(self) -> &'static str {
        match self {
            StoragePath::TimescaleDb => "timescaledb",
            StoragePath::Partitioned => "partitioned",
        }
    }
}

/// Table of a record type.
pub fn table(record: RecordType) -> &'static str {
    match record {
        RecordType::Light => "light_readings",
        RecordType::Cabinet => "cabinet_readings",
        RecordType::Meter => "meter_readings",
        RecordType::Vehicle => "vehicle_readings",
        RecordType::Event => "device_events",
        RecordType::Status => "device_status_log",
        RecordType::CmdAck => "command_acks",
    }
}

/// The natural key: a redelivered message maps to the same key and adds no row.
pub fn key_columns(record: RecordType) -> &'static str {
    match record {
        RecordType::Event => "device_id, ts, code",
        RecordType::CmdAck => "device_id, ts, id",
        _ => "device_id, ts",
    }
}

fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Bool => "boolean",
        FieldType::Real(..) => "real",
        FieldType::Double(..) => "double precision",
        FieldType::Text(..) => "text",
        FieldType::Uuid => "uuid",
    }
}

/// Quoted column names in COPY order: device_id, ts, fields..., extra.
pub fn copy_columns(record: RecordType) -> String {
    let mut cols = vec!["device_id".to_owned(), "ts".to_owned()];
    cols.extend(record.fields().iter().map(|f| format!("\"{}\"", f.name)));
    cols.push("extra".to_owned());
    cols.join(", ")
}

/// CREATE TABLE for a record type on the given path.
pub fn reading_table_ddl(record: RecordType, path: StoragePath) -> String {
    let name = table(record);
    let mut cols = vec![
        "device_id integer NOT NULL".to_owned(),
        "ts timestamptz NOT NULL".to_owned(),
    ];
    for f in record.fields() {
        let not_null = if f.required { " NOT NULL" } else { "" };
        cols.push(format!("\"{}\" {}{not_null}", f.name, column_type(f.ty)));
    }
    cols.push("extra jsonb".to_owned());
    let partition = match path {
        StoragePath::Partitioned => " PARTITION BY RANGE (ts)",
        StoragePath::TimescaleDb => "",
    };
    let mut sql = format!(
        "CREATE TABLE {name} (\n    {}\n){partition};\nCREATE UNIQUE INDEX {name}_key ON {name} ({});\n",
        cols.join(",\n    "),
        key_columns(record)
    );
    if path == StoragePath::TimescaleDb {
        sql.push_str(&format!(
            "SELECT create_hypertable('{name}', 'ts', chunk_time_interval => INTERVAL '1 day');\n\
             ALTER TABLE {name} SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC');\n\
             SELECT add_compression_policy('{name}', INTERVAL '7 days');\n"
        ));
    }
    sql
}

/// Migration 9. On native partitioning, a BRIN index on every reading table's time: the
/// key `(device_id, ts)` cannot find one time range of every device without reading the
/// whole day's partition; readings arrive in about time order, so a block-range index a
/// few pages long finds it (the rollups' refresher reads one 15-minute bucket of a day,
/// an export a range). TimescaleDB's hypertables have their own index on time; there
/// the districts' days count energy from the day before
/// ([`crate::rollups::timescale::timescale_districts_from_day_before`]).
pub fn migration_9(path: StoragePath) -> String {
    match path {
        StoragePath::TimescaleDb => {
            crate::rollups::timescale::timescale_districts_from_day_before()
        }
        StoragePath::Partitioned => RecordType::ALL
            .iter()
            .map(|r| {
                let name = table(*r);
                format!("CREATE INDEX {name}_ts ON {name} USING brin (ts);\n")
            })
            .collect(),
    }
}

/// Migration 10. On TimescaleDB the day aggregate is read as materialized only, and its
/// policy keeps it up to the newest day, today included
/// ([`crate::rollups::timescale::TIMESCALE_DAY_TO_TODAY`]). On native partitioning the refresher
/// already keeps today's rows: nothing to do.
pub fn migration_10(path: StoragePath) -> String {
    match path {
        StoragePath::TimescaleDb => crate::rollups::timescale::TIMESCALE_DAY_TO_TODAY.to_owned(),
        StoragePath::Partitioned => String::new(),
    }
}

/// Migration 11. On TimescaleDB the districts' days become a table the refresher keeps
/// ([`crate::rollups::timescale::timescale_district_table`]); native partitioning has had one since
/// migration 6.
pub fn migration_11(path: StoragePath) -> String {
    match path {
        StoragePath::TimescaleDb => crate::rollups::timescale::timescale_district_table(),
        StoragePath::Partitioned => String::new(),
    }
}

/// Migrations in order. Each runs once, in a transaction, under an advisory lock.
pub fn migrations(path: StoragePath) -> Vec<(i32, &'static str, String)> {
    let readings: String = RecordType::ALL
        .iter()
        .map(|r| reading_table_ddl(*r, path))
        .collect();
    vec![
        (1, "base", BASE.to_owned()),
        (2, "readings", readings),
        (3, "outages", OUTAGES.to_owned()),
        (4, "alarm hygiene and work orders", HYGIENE.to_owned()),
        (
            5,
            "users, sessions, API tokens and the audit log",
            ACCESS.to_owned(),
        ),
        (6, "telemetry rollups", crate::rollups::migration(path)),
        (
            7,
            "command delivery and lighting schedules",
            crate::commands::MIGRATION.to_owned(),
        ),
        (
            8,
            "service requests and change notifications",
            crate::service_requests::MIGRATION.to_owned(),
        ),
        (
            9,
            "reading time indexes and districts' days",
            migration_9(path),
        ),
        (10, "days rolled up to today", migration_10(path)),
        (11, "districts' days kept as a table", migration_11(path)),
        (
            12,
            "outage chronology",
            crate::outages::CHRONOLOGY.to_owned(),
        ),
        (
            13,
            "topics' last retained-deliverable messages",
            crate::mqtt::MIGRATION.to_owned(),
        ),
        (
            14,
            "dead letters' sizes and digests",
            crate::dead_letters::MIGRATION.to_owned(),
        ),
        (
            15,
            "who handles an outage",
            crate::outages::HANDLING.to_owned(),
        ),
        (
            16,
            "device inventory change notifications",
            crate::changes::DEVICES_MIGRATION.to_owned(),
        ),
        (17, "leases", crate::leases::MIGRATION.to_owned()),
        (18, "how far the rules judged", RULES_PROGRESS.to_owned()),
        (19, "notifications out", crate::notifications::migration()),
    ]
}

/// Migration 18: how far the rules judged (`progress`).
const RULES_PROGRESS: &str = r#"
-- Up to when the rules have judged every stored reading (`through`, inclusive, by the
-- readings' own times), written with their decisions.
CREATE TABLE rules_progress (
    name text PRIMARY KEY,
    through timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"#;

const BASE: &str = r#"
CREATE TABLE settings (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE tenants (
    id serial PRIMARY KEY,
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,32}$'),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id serial PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    ext_id text NOT NULL CHECK (ext_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind text NOT NULL CHECK (kind IN ('light', 'cabinet', 'meter', 'vehicle')),
    district text,
    cabinet text,
    rated_power_w double precision,
    medium text,
    route text,
    lon double precision NOT NULL,
    lat double precision NOT NULL,
    props jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, ext_id)
);
CREATE INDEX devices_updated_at ON devices (updated_at);
CREATE INDEX devices_tenant_kind ON devices (tenant_id, kind);

-- One row per device, updated once per committed batch with the newest values.
CREATE TABLE device_latest (
    device_id integer PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    telemetry_ts timestamptz,
    telemetry jsonb,
    status_ts timestamptz,
    online boolean,
    last_seen timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Everything ingestion refused, with the bytes as received.
CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    reason text NOT NULL,
    code text NOT NULL,
    element integer
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);
"#;

const OUTAGES: &str = r#"
CREATE TABLE outages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    kind text NOT NULL,
    state text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed')),
    reason text NOT NULL,
    opened_at timestamptz NOT NULL,
    resolved_at timestamptz,
    occurrences integer NOT NULL DEFAULT 1,
    last_seen timestamptz NOT NULL
);
-- One open outage per asset and kind, whatever writes.
CREATE UNIQUE INDEX outages_one_open ON outages (device_id, kind) WHERE state IN ('open', 'acknowledged');
CREATE INDEX outages_state ON outages (state, opened_at);

-- Every transition, kept forever.
CREATE TABLE outage_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outage_id bigint NOT NULL REFERENCES outages (id),
    at timestamptz NOT NULL,
    actor text NOT NULL,
    transition text NOT NULL,
    detail text
);
CREATE INDEX outage_events_outage ON outage_events (outage_id, at);
"#;

/// Alarm hygiene (severity, shelving, chattering, acknowledgement), maintenance windows,
/// work orders, commands and bus routes. Ordinary tables: the same on both storage paths.
const HYGIENE: &str = r#"
-- `recorded_at` is the wall time the hub wrote a row (when it knew), as opposed to the
-- telemetry time of what happened; the two differ on replays and backlogs.
ALTER TABLE outages
    ADD COLUMN severity text NOT NULL DEFAULT 'minor' CHECK (severity IN ('critical', 'major', 'minor')),
    ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN shelved_until timestamptz,
    ADD COLUMN shelved_by text,
    ADD COLUMN chattering boolean NOT NULL DEFAULT false,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN acknowledged_at timestamptz;
CREATE INDEX outages_shelved ON outages (shelved_until) WHERE shelved_until IS NOT NULL;
ALTER TABLE outage_events ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();

-- Planned work: outages of the devices covered are expected, not alarms.
CREATE TABLE maintenance_windows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('device', 'cabinet', 'district', 'tenant')),
    tenant_id integer NOT NULL REFERENCES tenants (id),
    -- A device or cabinet ext id, a district name, or the tenant's slug.
    target text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    reason text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_ends_at ON maintenance_windows (ends_at);

CREATE TABLE work_orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outage_id bigint REFERENCES outages (id),
    device_id integer NOT NULL REFERENCES devices (id),
    kind text NOT NULL,
    severity text NOT NULL,
    team text NOT NULL,
    assignee text,
    state text NOT NULL CHECK (state IN ('new', 'assigned', 'in_progress', 'done', 'verified', 'reopened', 'closed')),
    -- When the outage opened (telemetry time), and the deadline counted from it.
    opened_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    done_at timestamptz,
    verified_at timestamptz,
    closed_at timestamptz,
    reopened integer NOT NULL DEFAULT 0,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
-- One active work order per device and kind: a fault that comes back reopens it.
CREATE UNIQUE INDEX work_orders_one_active ON work_orders (device_id, kind) WHERE state <> 'closed';
CREATE INDEX work_orders_opened_at ON work_orders (opened_at);
CREATE INDEX work_orders_state ON work_orders (state, due_at);

-- Every transition of a work order, kept forever.
CREATE TABLE work_order_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders (id),
    at timestamptz NOT NULL,
    actor text NOT NULL,
    from_state text,
    to_state text NOT NULL,
    detail text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_order_events_order ON work_order_events (work_order_id, at);

-- Commands sent to devices; `id` is the uuid the device echoes in its acknowledgement.
CREATE TABLE commands (
    id text PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    action text NOT NULL CHECK (action IN ('set_light', 'set_schedule', 'reboot')),
    body jsonb NOT NULL,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'acked', 'rejected', 'failed', 'expired')),
    acked_at timestamptz,
    issued_by text NOT NULL
);
CREATE INDEX commands_device ON commands (device_id, issued_at);

-- Bus routes: `line` is a JSON array of [lon, lat]; vehicles name a route in devices.route.
CREATE TABLE routes (
    id serial PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    ext_id text NOT NULL,
    line jsonb NOT NULL,
    props jsonb NOT NULL DEFAULT '{}',
    UNIQUE (tenant_id, ext_id)
);
"#;

/// People and programs that use the API, what they may see, and the audit log of what
/// they changed. See `crate::auth` and `crate::audit`.
const ACCESS: &str = r#"
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    -- An Argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash); never the password.
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    role text NOT NULL CHECK (role IN ('admin', 'operator', 'dispatcher', 'crew', 'viewer', 'regional_viewer')),
    -- A crew member moves the work orders of this team only.
    team text,
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled boolean NOT NULL DEFAULT false,
    CHECK (role <> 'crew' OR team IS NOT NULL)
);

-- The tenants a user may see; every request is scoped to them.
CREATE TABLE user_tenants (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (user_id, tenant_id)
);

-- Browser sessions. The token itself is only in the cookie; this is its HMAC under the
-- hub's session secret, so a copy of the table alone cannot be replayed.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Tokens for programs (Authorization: Bearer). Shown once when created; the SHA-256 of
-- the token is kept.
CREATE TABLE api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked boolean NOT NULL DEFAULT false
);
-- One live token per user and name, so a name says which token was used.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (user_id, name) WHERE NOT revoked;

-- Every change made by a person or a program, hash-chained: each entry's hash covers
-- the previous entry's hash and its own fields, so an edited, deleted or reordered entry
-- breaks the chain (`cityhub audit verify`). Ids are assigned by the appender as the
-- previous id + 1 under a lock, not by a sequence: a sequence leaves gaps on rollback,
-- and a gap is how a deleted entry shows.
CREATE TABLE audit_log (
    id bigint PRIMARY KEY CHECK (id > 0),
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    prev_hash bytea,
    hash bytea NOT NULL
);

-- Appending is the only write: an UPDATE, DELETE or TRUNCATE is refused. (Whoever owns
-- the table can disable the trigger; the hash chain still shows what they did.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is refused', TG_OP;
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The API pages through outages newest first.
CREATE INDEX outages_opened ON outages (opened_at, id);
"#;
