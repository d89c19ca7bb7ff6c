//! Notifications out: webhooks a tenant's administrators subscribe to outage and work
//! order events, filtered by event, kind, severity and district.
//!
//! An event's messages are queued by the transaction that records the event (triggers on
//! `outage_events` and `work_order_events`, migration 19), one per matching subscription,
//! so none is lost whatever stops the hub, and queuing costs the rules and the API one
//! statement. The deliverer (`notify`) takes each subscription's oldest message not yet
//! delivered, in the order they were queued, and records every attempt
//! ([`Notifier::delivered`], [`Notifier::failed`]); a subscription waits after a failure
//! and is disabled with its reason when it has failed for too long. Nothing is queued for
//! a disabled or removed subscription.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::audit::{append, AuditEntry};
use crate::handles::{Actions, Notifier, Reads};
use crate::StoreError;

/// Migration 19: subscriptions, their queued messages and the attempts to deliver them.
pub fn migration() -> String {
    MIGRATION.replace("{covers}", &crate::maintenance::window_covers())
}

const MIGRATION: &str = r#"
CREATE TABLE webhook_subscriptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id integer NOT NULL REFERENCES tenants (id),
    -- An HTTP endpoint, or an e-mail address (`url` is then `mailto:` and the address).
    channel text NOT NULL DEFAULT 'webhook' CHECK (channel IN ('webhook', 'email')),
    url text NOT NULL,
    -- `whsec_` and the base64 key the messages are signed with (Standard Webhooks).
    secret text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- What is sent: an event matches when each list is null or holds its value.
    event_types text[],
    kinds text[],
    severities text[],
    districts text[],
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    removed_at timestamptz,
    -- Delivery: failed attempts in a row, since when, and when to try again.
    failures integer NOT NULL DEFAULT 0,
    failing_since timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    disabled_at timestamptz,
    disabled_reason text,
    -- A resident's, made without signing in (planned works by e-mail): nothing but its
    -- confirmation is sent until it is confirmed. The tokens are in the links of its mails.
    resident boolean NOT NULL DEFAULT false,
    confirmed_at timestamptz,
    confirm_token text UNIQUE,
    unsubscribe_token text UNIQUE,
    CHECK (channel = 'email' OR NOT resident)
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant_id);
-- One live subscription per resident's address, tenant and district.
CREATE UNIQUE INDEX webhook_subscriptions_resident ON webhook_subscriptions
    (tenant_id, lower(url), coalesce(districts[1], ''))
    WHERE resident AND removed_at IS NULL;

-- One message per event and subscription, queued with the event.
CREATE TABLE webhook_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id),
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts integer NOT NULL DEFAULT 0,
    delivered_at timestamptz
);
CREATE INDEX webhook_messages_pending ON webhook_messages (subscription_id, id)
    WHERE delivered_at IS NULL;
CREATE INDEX webhook_messages_subscription ON webhook_messages (subscription_id, id);

-- Every attempt: the answer's status (null when none came) and what went wrong.
CREATE TABLE webhook_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES webhook_messages (id),
    at timestamptz NOT NULL,
    status integer,
    error text,
    duration_ms integer NOT NULL
);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id, id);

CREATE FUNCTION webhook_time(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- The subscriptions an event of `tenant` matches.
CREATE FUNCTION webhook_matches(tenant int4, event_type text, kind text, severity text,
                                district text) RETURNS SETOF bigint LANGUAGE sql STABLE AS
$$ SELECT s.id FROM webhook_subscriptions s
   WHERE s.tenant_id = tenant AND s.removed_at IS NULL AND s.disabled_at IS NULL
     AND (NOT s.resident OR s.confirmed_at IS NOT NULL)
     AND (s.event_types IS NULL OR event_type = ANY (s.event_types))
     AND (s.kinds IS NULL OR kind = ANY (s.kinds))
     AND (s.severities IS NULL OR severity = ANY (s.severities))
     AND (s.districts IS NULL OR district = ANY (s.districts)) $$;

CREATE FUNCTION webhook_outage_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_messages (subscription_id, event_type, payload)
    SELECT s, 'outage.' || c.transition, jsonb_build_object(
        'type', 'outage.' || c.transition,
        'timestamp', webhook_time(c.at),
        'data', jsonb_build_object(
            'id', o.id, 'event_id', c.id, 'tenant', t.slug, 'device', d.ext_id,
            'district', d.district, 'kind', o.kind, 'state', o.state,
            'severity', o.severity, 'transition', c.transition, 'actor', c.actor,
            'detail', c.detail, 'opened_at', webhook_time(o.opened_at),
            'at', webhook_time(c.at)))
    FROM changed c
    JOIN outages o ON o.id = c.outage_id
    JOIN devices d ON d.id = o.device_id
    JOIN tenants t ON t.id = d.tenant_id
    CROSS JOIN LATERAL webhook_matches(d.tenant_id, 'outage.' || c.transition, o.kind,
                                       o.severity, d.district) s
    WHERE c.transition <> 'occurred again'
    ORDER BY s, c.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER outage_events_webhooks AFTER INSERT ON outage_events
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION webhook_outage_events();

CREATE FUNCTION webhook_work_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_messages (subscription_id, event_type, payload)
    SELECT s, 'work_order.' || c.to_state, jsonb_build_object(
        'type', 'work_order.' || c.to_state,
        'timestamp', webhook_time(c.at),
        'data', jsonb_build_object(
            'id', w.id, 'event_id', c.id, 'tenant', t.slug, 'device', d.ext_id,
            'district', d.district, 'outage_id', w.outage_id, 'kind', w.kind,
            'severity', w.severity, 'state', w.state, 'from', c.from_state,
            'to', c.to_state, 'team', w.team, 'assignee', w.assignee,
            'due_at', webhook_time(w.due_at), 'actor', c.actor, 'detail', c.detail,
            'at', webhook_time(c.at)))
    FROM changed c
    JOIN work_orders w ON w.id = c.work_order_id
    JOIN devices d ON d.id = w.device_id
    JOIN tenants t ON t.id = d.tenant_id
    CROSS JOIN LATERAL webhook_matches(d.tenant_id, 'work_order.' || c.to_state, w.kind,
                                       w.severity, d.district) s
    ORDER BY s, c.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER work_order_events_webhooks AFTER INSERT ON work_order_events
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION webhook_work_order_events();

-- Planned works: for subscriptions without a kind or severity filter whose districts (if
-- any) the works touch. Their reason is not sent: it may name people.
CREATE FUNCTION webhook_planned_works() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_messages (subscription_id, event_type, payload)
    SELECT s.id, 'planned_works.announced', jsonb_build_object(
        'type', 'planned_works.announced',
        'timestamp', webhook_time(w.created_at),
        'data', jsonb_build_object(
            'id', w.id, 'tenant', t.slug, 'tenant_name', t.name, 'scope', w.scope,
            'districts', to_jsonb(ds.districts), 'devices', ds.devices,
            'starts_at', webhook_time(w.starts_at), 'ends_at', webhook_time(w.ends_at)))
    FROM changed w
    JOIN tenants t ON t.id = w.tenant_id
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(DISTINCT d.district ORDER BY d.district)
                        FILTER (WHERE d.district IS NOT NULL), '{}') AS districts,
               count(*) AS devices
        FROM devices d WHERE {covers}) ds
    JOIN webhook_subscriptions s ON s.tenant_id = w.tenant_id AND s.removed_at IS NULL
        AND s.disabled_at IS NULL AND (NOT s.resident OR s.confirmed_at IS NOT NULL)
        AND (s.event_types IS NULL OR 'planned_works.announced' = ANY (s.event_types))
        AND s.kinds IS NULL AND s.severities IS NULL
        AND (s.districts IS NULL OR s.districts && ds.districts)
    ORDER BY s.id, w.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER maintenance_windows_webhooks AFTER INSERT ON maintenance_windows
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION webhook_planned_works();
"#;

/// The events a subscription may ask for.
pub const EVENT_TYPES: [&str; 17] = [
    "outage.opened",
    "outage.acknowledged",
    "outage.shelved",
    "outage.unshelved",
    "outage.assigned",
    "outage.comment",
    "outage.chattering",
    "outage.resolved",
    "outage.closed",
    "work_order.new",
    "work_order.assigned",
    "work_order.in_progress",
    "work_order.done",
    "work_order.verified",
    "work_order.reopened",
    "work_order.closed",
    "planned_works.announced",
];

/// A subscription to add.
#[derive(Debug, Clone)]
pub struct NewWebhook<'a> {
    pub tenant_id: i32,
    /// An endpoint, or `mailto:` and an address.
    pub url: &'a str,
    pub secret: &'a str,
    /// For an e-mail: the token of its one-click unsubscribe link.
    pub unsubscribe_token: Option<&'a str>,
    pub description: &'a str,
    pub event_types: Option<Vec<String>>,
    pub kinds: Option<Vec<String>>,
    pub severities: Option<Vec<String>>,
    pub districts: Option<Vec<String>>,
    pub by: &'a str,
    pub at: DateTime<Utc>,
}

/// A subscription as stored, without its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub id: i64,
    pub tenant: String,
    pub url: String,
    pub description: String,
    pub event_types: Option<Vec<String>>,
    pub kinds: Option<Vec<String>>,
    pub severities: Option<Vec<String>>,
    pub districts: Option<Vec<String>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// When the next attempt may be made; none when at once.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Messages queued and not yet delivered.
    pub pending: i64,
    pub delivered: i64,
}

const WEBHOOK_COLUMNS: &str = "s.id, t.slug, s.url, s.description, s.event_types, s.kinds,
    s.severities, s.districts, s.created_by, s.created_at, s.removed_at, s.failures,
    s.failing_since, nullif(s.next_attempt_at, '-infinity'), s.disabled_at, s.disabled_reason,
    (SELECT count(*) FROM webhook_messages m WHERE m.subscription_id = s.id AND m.delivered_at IS NULL),
    (SELECT count(*) FROM webhook_messages m WHERE m.subscription_id = s.id AND m.delivered_at IS NOT NULL)";

fn webhook_row(r: &Row) -> WebhookRow {
    WebhookRow {
        id: r.get(0),
        tenant: r.get(1),
        url: r.get(2),
        description: r.get(3),
        event_types: r.get(4),
        kinds: r.get(5),
        severities: r.get(6),
        districts: r.get(7),
        created_by: r.get(8),
        created_at: r.get(9),
        removed_at: r.get(10),
        failures: r.get(11),
        failing_since: r.get(12),
        next_attempt_at: r.get(13),
        disabled_at: r.get(14),
        disabled_reason: r.get(15),
        pending: r.get(16),
        delivered: r.get(17),
    }
}

/// A queued message and its attempts, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub queued_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptRow>,
}

/// One attempt to deliver a message.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub at: DateTime<Utc>,
    /// The HTTP status answered; none when no answer came.
    pub status: Option<i32>,
    /// What went wrong; none when the message was delivered.
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// A subscription with messages to deliver, as the deliverer needs it.
#[derive(Debug, Clone)]
pub struct DueWebhook {
    pub id: i64,
    pub channel: Channel,
    /// The endpoint, or `mailto:` and the address.
    pub url: String,
    pub secret: String,
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// The tenant's slug, for the links of e-mails.
    pub tenant: String,
    /// The token of an e-mail's one-click unsubscribe link.
    pub unsubscribe_token: Option<String>,
}

/// How a subscription is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// HTTP POSTs (Standard Webhooks).
    Webhook,
    /// E-mails.
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }

    /// The channel of a subscription's `url`.
    pub fn of_url(url: &str) -> Channel {
        if url.starts_with(MAILTO) {
            Channel::Email
        } else {
            Channel::Webhook
        }
    }
}

/// What an e-mail subscription's `url` starts with.
pub const MAILTO: &str = "mailto:";

/// A message to deliver: its id (the `webhook-id` is made from it) and its body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub event_type: String,
    pub body: String,
}

/// How an attempt went.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

impl Actions {
    /// Adds a subscription (audited as `webhook.add`).
    pub async fn add_webhook(&mut self, w: &NewWebhook<'_>) -> Result<WebhookRow, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a webhook change"))?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO webhook_subscriptions (tenant_id, url, secret, description,
                     event_types, kinds, severities, districts, created_by, created_at,
                     channel, unsubscribe_token)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &w.tenant_id,
                    &w.url,
                    &w.secret,
                    &w.description,
                    &w.event_types,
                    &w.kinds,
                    &w.severities,
                    &w.districts,
                    &w.by,
                    &w.at,
                    &Channel::of_url(w.url).as_str(),
                    &w.unsubscribe_token,
                ],
            )
            .await
            .map_err(StoreError::db("recording a webhook"))?
            .get(0);
        let row = webhook(&tx, &[w.tenant_id], id).await?;
        append(
            &tx,
            &AuditEntry {
                actor: w.by.to_owned(),
                action: "webhook.add".to_owned(),
                target: format!("webhook/{id}"),
                detail: serde_json::json!({
                    "tenant_id": w.tenant_id, "url": w.url, "description": w.description,
                    "event_types": w.event_types, "kinds": w.kinds,
                    "severities": w.severities, "districts": w.districts,
                }),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a webhook change"))?;
        Ok(row)
    }

    /// Removes a subscription: nothing more is queued or sent for it (audited as
    /// `webhook.remove`).
    pub async fn remove_webhook(
        &mut self,
        tenants: &[i32],
        id: i64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<WebhookRow, StoreError> {
        self.change_webhook(tenants, id, by, WebhookChange::Remove(at))
            .await
    }

    /// Enables a subscription the deliverer disabled, or that is waiting after failures:
    /// its queued messages are tried again now (audited as `webhook.enable`).
    pub async fn enable_webhook(
        &mut self,
        tenants: &[i32],
        id: i64,
        by: &str,
    ) -> Result<WebhookRow, StoreError> {
        self.change_webhook(tenants, id, by, WebhookChange::Enable)
            .await
    }

    async fn change_webhook(
        &mut self,
        tenants: &[i32],
        id: i64,
        by: &str,
        change: WebhookChange,
    ) -> Result<WebhookRow, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a webhook change"))?;
        let found = tx
            .query_opt(
                "SELECT tenant_id, removed_at IS NOT NULL FROM webhook_subscriptions
                 WHERE id = $1 AND tenant_id = ANY($2) AND NOT resident FOR UPDATE",
                &[&id, &tenants],
            )
            .await
            .map_err(StoreError::db("reading a webhook"))?
            .ok_or(StoreError::NoWebhook(id))?;
        let (tenant_id, removed): (i32, bool) = (found.get(0), found.get(1));
        if removed {
            return Err(StoreError::WebhookRemoved(id));
        }
        let action = match change {
            WebhookChange::Remove(at) => {
                tx.execute(
                    "UPDATE webhook_subscriptions SET removed_at = $2 WHERE id = $1",
                    &[&id, &at],
                )
                .await
                .map_err(StoreError::db("removing a webhook"))?;
                "webhook.remove"
            }
            WebhookChange::Enable => {
                tx.execute(
                    "UPDATE webhook_subscriptions SET disabled_at = NULL, disabled_reason = NULL,
                         failures = 0, failing_since = NULL, next_attempt_at = '-infinity'
                     WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(StoreError::db("enabling a webhook"))?;
                "webhook.enable"
            }
        };
        append(
            &tx,
            &AuditEntry {
                actor: by.to_owned(),
                action: action.to_owned(),
                target: format!("webhook/{id}"),
                detail: serde_json::json!({ "tenant_id": tenant_id }),
            },
        )
        .await?;
        let row = webhook(&tx, tenants, id).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a webhook change"))?;
        Ok(row)
    }
}

/// What a person does to a subscription.
enum WebhookChange {
    Remove(DateTime<Utc>),
    Enable,
}

/// Subscription `id` among `tenants`' (removed ones too).
async fn webhook(
    client: &impl tokio_postgres::GenericClient,
    tenants: &[i32],
    id: i64,
) -> Result<WebhookRow, StoreError> {
    client
        .query_opt(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_subscriptions s
                 JOIN tenants t ON t.id = s.tenant_id
                 WHERE s.id = $1 AND s.tenant_id = ANY($2) AND NOT s.resident"
            ),
            &[&id, &tenants],
        )
        .await
        .map_err(StoreError::db("reading a webhook"))?
        .map(|r| webhook_row(&r))
        .ok_or(StoreError::NoWebhook(id))
}

impl Reads {
    /// `tenants`' subscriptions not removed, oldest first.
    pub async fn webhooks(&self, tenants: &[i32]) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_subscriptions s
                     JOIN tenants t ON t.id = s.tenant_id
                     WHERE s.tenant_id = ANY($1) AND s.removed_at IS NULL AND NOT s.resident
                     ORDER BY s.id"
                ),
                &[&tenants],
            )
            .await
            .map_err(StoreError::db("listing webhooks"))?;
        Ok(rows.iter().map(webhook_row).collect())
    }

    /// Subscription `id` among `tenants`' (removed ones too).
    pub async fn webhook(&self, tenants: &[i32], id: i64) -> Result<WebhookRow, StoreError> {
        webhook(self.client(), tenants, id).await
    }

    /// Subscription `id`'s newest `limit` messages before message `before` (all when
    /// none), newest first, each with its newest attempts (at most 10).
    pub async fn webhook_messages(
        &self,
        tenants: &[i32],
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        webhook(self.client(), tenants, id).await?;
        let rows = self
            .client()
            .query(
                "SELECT m.id, m.event_type, m.payload, m.queued_at, m.delivered_at,
                        coalesce((SELECT jsonb_agg(jsonb_build_object(
                                    'at', webhook_time(a.at), 'status', a.status,
                                    'error', a.error, 'duration_ms', a.duration_ms)
                                  ORDER BY a.id DESC)
                                  FROM (SELECT * FROM webhook_attempts a
                                        WHERE a.message_id = m.id
                                        ORDER BY a.id DESC LIMIT 10) a), '[]')
                 FROM webhook_messages m
                 WHERE m.subscription_id = $1 AND ($2::int8 IS NULL OR m.id < $2)
                 ORDER BY m.id DESC LIMIT $3",
                &[&id, &before, &limit],
            )
            .await
            .map_err(StoreError::db("listing a webhook's messages"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let attempts: serde_json::Value = r.get(5);
                MessageRow {
                    id: r.get(0),
                    event_type: r.get(1),
                    payload: r.get(2),
                    queued_at: r.get(3),
                    delivered_at: r.get(4),
                    attempts: attempts
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| AttemptRow {
                            at: a["at"]
                                .as_str()
                                .and_then(|t| t.parse().ok())
                                .unwrap_or_default(),
                            status: a["status"].as_i64().map(|s| s as i32),
                            error: a["error"].as_str().map(str::to_owned),
                            duration_ms: a["duration_ms"].as_i64().unwrap_or_default() as i32,
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// Confirmation mails one resident's subscription is sent at most, a day.
pub const CONFIRMATIONS_A_DAY: i64 = 3;

/// What came of a resident's wish to subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A new subscription; its confirmation is queued.
    Asked,
    /// Not confirmed yet: its confirmation is queued again.
    AskedAgain,
    /// Not confirmed yet, and confirmations were sent [`CONFIRMATIONS_A_DAY`] times in the
    /// last day: nothing more is sent.
    Throttled,
    /// Confirmed already: nothing is sent.
    AlreadyConfirmed,
}

/// A resident's subscription to planned works.
#[derive(Debug, Clone)]
pub struct NewResident<'a> {
    pub tenant_id: i32,
    pub email: &'a str,
    /// One district; the whole city when none.
    pub district: Option<&'a str>,
    /// Made by the caller: the links of the confirmation and of every mail.
    pub confirm_token: &'a str,
    pub unsubscribe_token: &'a str,
    pub at: DateTime<Utc>,
}

/// A resident's subscription, as its confirmation or unsubscription finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidentRow {
    pub tenant: String,
    pub district: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub removed_at: Option<DateTime<Utc>>,
}

impl Actions {
    /// Subscribes a resident's address to a tenant's planned works (in one district, or the
    /// whole city), unconfirmed: only the confirmation is queued, and it says nothing to
    /// anyone else about whether the address was subscribed before.
    pub async fn subscribe_resident(
        &mut self,
        r: &NewResident<'_>,
    ) -> Result<Subscribed, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a resident's subscription"))?;
        let url = format!("{MAILTO}{}", r.email);
        let districts: Option<Vec<&str>> = r.district.map(|d| vec![d]);
        let found = tx
            .query_opt(
                "SELECT id, confirmed_at IS NOT NULL, confirm_token,
                        (SELECT count(*) FROM webhook_messages m
                         WHERE m.subscription_id = s.id AND m.event_type = 'subscription.confirm'
                           AND m.queued_at > $4::timestamptz - INTERVAL '1 day')
                 FROM webhook_subscriptions s
                 WHERE resident AND removed_at IS NULL AND tenant_id = $1
                   AND lower(url) = lower($2) AND coalesce(districts[1], '') = coalesce($3, '')
                 FOR UPDATE",
                &[&r.tenant_id, &url, &r.district, &r.at],
            )
            .await
            .map_err(StoreError::db("reading a resident's subscription"))?;
        let (id, token, outcome) = match found {
            Some(row) if row.get::<_, bool>(1) => return Ok(Subscribed::AlreadyConfirmed),
            Some(row) if row.get::<_, i64>(3) >= CONFIRMATIONS_A_DAY => {
                return Ok(Subscribed::Throttled)
            }
            Some(row) => (
                row.get::<_, i64>(0),
                row.get::<_, Option<String>>(2)
                    .unwrap_or_else(|| r.confirm_token.to_owned()),
                Subscribed::AskedAgain,
            ),
            None => {
                // Two requests for the same new address at once: the one that comes second
                // sends nothing more.
                let Some(row) = tx
                    .query_opt(
                        "INSERT INTO webhook_subscriptions (tenant_id, channel, url, secret,
                             description, event_types, districts, created_by, created_at,
                             resident, confirm_token, unsubscribe_token)
                         VALUES ($1, 'email', $2, '', 'a resident: planned works',
                                 ARRAY['planned_works.announced'], $3, 'resident', $4,
                                 true, $5, $6)
                         ON CONFLICT (tenant_id, lower(url), coalesce(districts[1], ''))
                             WHERE resident AND removed_at IS NULL DO NOTHING
                         RETURNING id",
                        &[
                            &r.tenant_id,
                            &url,
                            &districts,
                            &r.at,
                            &r.confirm_token,
                            &r.unsubscribe_token,
                        ],
                    )
                    .await
                    .map_err(StoreError::db("recording a resident's subscription"))?
                else {
                    return Ok(Subscribed::Throttled);
                };
                (row.get(0), r.confirm_token.to_owned(), Subscribed::Asked)
            }
        };
        tx.execute(
            "INSERT INTO webhook_messages (subscription_id, event_type, payload)
             SELECT s.id, 'subscription.confirm', jsonb_build_object(
                 'type', 'subscription.confirm', 'timestamp', webhook_time($3),
                 'data', jsonb_build_object('tenant', t.slug, 'tenant_name', t.name,
                     'district', s.districts[1], 'token', $2::text))
             FROM webhook_subscriptions s JOIN tenants t ON t.id = s.tenant_id WHERE s.id = $1",
            &[&id, &token, &r.at],
        )
        .await
        .map_err(StoreError::db("queuing a confirmation"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a resident's subscription"))?;
        Ok(outcome)
    }

    /// Confirms the resident's subscription of tenant `tenant_id` whose confirmation token
    /// is `token`; none when there is no such token (used, or never given).
    pub async fn confirm_resident(
        &mut self,
        tenant_id: i32,
        token: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ResidentRow>, StoreError> {
        self.resident_step(
            "UPDATE webhook_subscriptions s SET confirmed_at = $3, confirm_token = NULL
             FROM tenants t
             WHERE t.id = s.tenant_id AND s.tenant_id = $1 AND s.confirm_token = $2
               AND s.removed_at IS NULL
             RETURNING t.slug, s.districts[1], s.confirmed_at, s.removed_at",
            tenant_id,
            token,
            at,
        )
        .await
    }

    /// Ends the e-mail subscription of tenant `tenant_id` whose unsubscribe token is
    /// `token`; what it was, also when it had ended already; none for an unknown token.
    pub async fn unsubscribe(
        &mut self,
        tenant_id: i32,
        token: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ResidentRow>, StoreError> {
        self.resident_step(
            "UPDATE webhook_subscriptions s SET removed_at = coalesce(s.removed_at, $3)
             FROM tenants t
             WHERE t.id = s.tenant_id AND s.tenant_id = $1 AND s.unsubscribe_token = $2
             RETURNING t.slug, s.districts[1], s.confirmed_at, s.removed_at",
            tenant_id,
            token,
            at,
        )
        .await
    }

    async fn resident_step(
        &mut self,
        sql: &str,
        tenant_id: i32,
        token: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ResidentRow>, StoreError> {
        let row = self
            .client()
            .query_opt(sql, &[&tenant_id, &token, &at])
            .await
            .map_err(StoreError::db("changing a subscription by its link"))?;
        Ok(row.map(|r| ResidentRow {
            tenant: r.get(0),
            district: r.get(1),
            confirmed_at: r.get(2),
            removed_at: r.get(3),
        }))
    }
}

impl Notifier {
    /// Subscriptions with messages to deliver whose wait after a failure is over at `now`,
    /// the longest waiting first.
    pub async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueWebhook>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT s.id, s.url, s.secret, s.failures, s.failing_since, t.slug,
                        s.unsubscribe_token
                 FROM webhook_subscriptions s JOIN tenants t ON t.id = s.tenant_id
                 WHERE s.removed_at IS NULL AND s.disabled_at IS NULL AND s.next_attempt_at <= $1
                   AND EXISTS (SELECT 1 FROM webhook_messages m
                               WHERE m.subscription_id = s.id AND m.delivered_at IS NULL)
                 ORDER BY s.next_attempt_at, s.id LIMIT $2",
                &[&now, &limit],
            )
            .await
            .map_err(StoreError::db("finding webhooks to deliver"))?;
        Ok(rows
            .iter()
            .map(|r| DueWebhook {
                id: r.get(0),
                channel: Channel::of_url(r.get(1)),
                url: r.get(1),
                secret: r.get(2),
                failures: r.get(3),
                failing_since: r.get(4),
                tenant: r.get(5),
                unsubscribe_token: r.get(6),
            })
            .collect())
    }

    /// Subscription `id`'s oldest `limit` messages not delivered, in the order queued.
    pub async fn outgoing(&self, id: i64, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT id, event_type, payload::text FROM webhook_messages
                 WHERE subscription_id = $1 AND delivered_at IS NULL ORDER BY id LIMIT $2",
                &[&id, &limit],
            )
            .await
            .map_err(StoreError::db("reading messages to deliver"))?;
        Ok(rows
            .iter()
            .map(|r| Outgoing {
                id: r.get(0),
                event_type: r.get(1),
                body: r.get(2),
            })
            .collect())
    }

    /// Message `message` was delivered by `attempt`: its subscription is well again.
    pub async fn delivered(&mut self, message: i64, attempt: &Attempt) -> Result<(), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a delivery's record"))?;
        record_attempt(&tx, message, attempt, true).await?;
        tx.execute(
            "UPDATE webhook_subscriptions SET failures = 0, failing_since = NULL,
                 next_attempt_at = '-infinity'
             WHERE id = (SELECT subscription_id FROM webhook_messages WHERE id = $1)
               AND failures > 0",
            &[&message],
        )
        .await
        .map_err(StoreError::db("recording a delivery"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a delivery's record"))
    }

    /// Message `message` was not delivered by `attempt`: its subscription waits until
    /// `retry_at`, or is disabled for `disable` (the reason) when it has failed too long.
    pub async fn failed(
        &mut self,
        message: i64,
        attempt: &Attempt,
        retry_at: DateTime<Utc>,
        disable: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a failed delivery's record"))?;
        record_attempt(&tx, message, attempt, false).await?;
        tx.execute(
            "UPDATE webhook_subscriptions SET failures = failures + 1,
                 failing_since = coalesce(failing_since, $2), next_attempt_at = $3,
                 disabled_at = CASE WHEN $4::text IS NULL THEN NULL ELSE $2 END,
                 disabled_reason = $4
             WHERE id = (SELECT subscription_id FROM webhook_messages WHERE id = $1)",
            &[&message, &attempt.at, &retry_at, &disable],
        )
        .await
        .map_err(StoreError::db("recording a failed delivery"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a failed delivery's record"))
    }
}

async fn record_attempt(
    tx: &tokio_postgres::Transaction<'_>,
    message: i64,
    a: &Attempt,
    delivered: bool,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO webhook_attempts (message_id, at, status, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&message, &a.at, &a.status, &a.error, &a.duration_ms],
    )
    .await
    .map_err(StoreError::db("recording a delivery attempt"))?;
    tx.execute(
        "UPDATE webhook_messages SET attempts = attempts + 1,
             delivered_at = CASE WHEN $2 THEN $3::timestamptz END
         WHERE id = $1",
        &[&message, &delivered, &a.at],
    )
    .await
    .map_err(StoreError::db("recording a delivery attempt"))?;
    Ok(())
}
