//! The lighting profile each lamp follows now: among the live schedules that cover it, an
//! override first, then the most specific scope (devices, cabinet, district, tenant), then
//! the newest. Read by schedule changes (the profiles before and after) and by commands
//! that send lamps back to their schedule.

use std::collections::HashMap;

use tokio_postgres::Transaction;

use crate::StoreError;

/// Each lamp of `tenant` and the profile it follows now (`None`: the default).
pub(crate) async fn profiles(
    tx: &Transaction<'_>,
    tenant: i32,
) -> Result<HashMap<i32, Option<serde_json::Value>>, StoreError> {
    let rows = tx
        .query(
            "SELECT d.id, s.profile FROM devices d
             LEFT JOIN LATERAL (
                 SELECT s.profile FROM lighting_schedules s
                 WHERE s.tenant_id = d.tenant_id AND s.removed_at IS NULL
                   AND (s.scope = 'tenant'
                        OR (s.scope = 'district' AND s.target = d.district)
                        OR (s.scope = 'cabinet' AND s.target = d.cabinet)
                        OR (s.scope = 'devices' AND d.ext_id = ANY(s.devices)))
                 ORDER BY s.override DESC,
                          CASE s.scope WHEN 'devices' THEN 0 WHEN 'cabinet' THEN 1
                                       WHEN 'district' THEN 2 ELSE 3 END,
                          s.id DESC
                 LIMIT 1
             ) s ON true
             WHERE d.tenant_id = $1 AND d.kind = $2",
            &[&tenant, &model::Kind::Light.as_str()],
        )
        .await
        .map_err(StoreError::db("reading the lamps' schedules"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
