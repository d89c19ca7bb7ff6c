//! Devices of the caller's tenants with their newest state (`device_latest`), filtered by
//! kind, district, cabinet or a bounding box, a page at a time.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::{DeviceQuery, DeviceRow};
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::params::{self, CursorKind};
use crate::roles::Permission;
use crate::v1::ListPage;
use crate::AppState;

/// A device and its newest state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    pub id: i32,
    pub tenant: String,
    /// Its inventory id (unique within the tenant).
    pub ext_id: String,
    /// light, cabinet, meter or vehicle.
    pub kind: String,
    pub district: Option<String>,
    /// For lamps: the cabinet feeding it.
    pub cabinet: Option<String>,
    pub rated_power_w: Option<f64>,
    /// For meters: water, electricity or heat.
    pub medium: Option<String>,
    /// For vehicles: the route.
    pub route: Option<String>,
    pub lon: f64,
    pub lat: f64,
    /// What the inventory leaves the rules unable to judge, one sentence each (a lamp
    /// without a rated power); empty when nothing.
    pub inventory_warnings: Vec<String>,
    /// Absent until the device has been heard from.
    pub latest: Option<Latest>,
}

/// What a lamp without a rated power cannot be judged by.
pub const NO_RATED_POWER: &str =
    "no rated_power_w in the inventory: a failed lamp is found only from its own fault reports, never from its power";

fn inventory_warnings(d: &DeviceRow) -> Vec<String> {
    let unrated =
        d.kind == model::Kind::Light.as_str() && !d.rated_power_w.is_some_and(|w| w > 0.0);
    unrated
        .then(|| NO_RATED_POWER.to_owned())
        .into_iter()
        .collect()
}

/// What a device last said.
#[derive(Debug, Serialize, ToSchema)]
pub struct Latest {
    /// Time of the newest telemetry.
    pub telemetry_ts: Option<DateTime<Utc>>,
    /// The newest telemetry's fields.
    #[schema(value_type = Option<Object>)]
    pub telemetry: Option<serde_json::Value>,
    pub status_ts: Option<DateTime<Utc>>,
    /// From its status messages (its last will says offline).
    pub online: Option<bool>,
    /// Time of the newest message of any kind.
    pub last_seen: DateTime<Utc>,
}

impl From<DeviceRow> for Device {
    fn from(d: DeviceRow) -> Device {
        let inventory_warnings = inventory_warnings(&d);
        Device {
            inventory_warnings,
            id: d.id,
            tenant: d.tenant,
            ext_id: d.ext_id,
            kind: d.kind,
            district: d.district,
            cabinet: d.cabinet,
            rated_power_w: d.rated_power_w,
            medium: d.medium,
            route: d.route,
            lon: d.lon,
            lat: d.lat,
            latest: d.latest.map(|l| Latest {
                telemetry_ts: l.telemetry_ts,
                telemetry: l.telemetry,
                status_ts: l.status_ts,
                online: l.online,
                last_seen: l.last_seen,
            }),
        }
    }
}

/// Filters and paging of the device list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// light, cabinet, meter or vehicle.
    pub kind: Option<String>,
    pub district: Option<String>,
    /// A cabinet's inventory id: the lamps it feeds.
    pub cabinet: Option<String>,
    /// minlon,minlat,maxlon,maxlat in degrees (WGS 84).
    pub bbox: Option<String>,
    /// A tenant slug (one of the caller's).
    pub tenant: Option<String>,
    /// Items per page: 1 to 1000, 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Devices of the caller's tenants, by id.
#[utoipa::path(
    get,
    path = "/devices",
    operation_id = "list_devices",
    tag = "devices",
    params(DeviceFilter),
    responses(
        (status = 200, description = "A page of devices", body = ListPage<Device>),
        (status = 400, description = "A filter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<DeviceFilter>,
) -> Result<Json<ListPage<Device>>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let after = f
        .cursor
        .as_deref()
        .map(|c| params::decode_cursor(CursorKind::Devices, c))
        .transpose()?
        .map(|(_, id)| {
            i32::try_from(id).map_err(|_| {
                ApiError::bad_request(
                    "cursor is not one this list gave out; start again without it",
                )
            })
        })
        .transpose()?;
    let query = DeviceQuery {
        tenants: &tenants,
        kind: params::one_of("kind", f.kind.as_deref(), &model::Kind::NAMES)?,
        district: params::short("district", f.district.as_deref())?,
        cabinet: params::short("cabinet", f.cabinet.as_deref())?,
        bbox: params::bbox(f.bbox.as_deref())?,
        after,
        limit: params::limit(f.limit)?,
    };
    let page = state.pool().reads().await?.device_page(&query).await?;
    let next_cursor = page
        .more
        .then(|| page.items.last())
        .flatten()
        .map(|d| params::encode_cursor(CursorKind::Devices, None, i64::from(d.id)));
    Ok(Json(ListPage {
        items: page.items.into_iter().map(Device::from).collect(),
        next_cursor,
    }))
}

/// Which tenant a device id is looked up in.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceTenant {
    /// The device's tenant (one of the caller's), needed when the id exists in several.
    pub tenant: Option<String>,
}

/// A device with its newest state and its open outages.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    /// Outages open or acknowledged on it.
    pub open_outages: i64,
}

/// One device, by its inventory id.
#[utoipa::path(
    get,
    path = "/devices/{id}",
    operation_id = "get_device",
    tag = "devices",
    params(("id" = String, Path, description = "The device's inventory id"), DeviceTenant),
    responses(
        (status = 200, description = "The device", body = DeviceDetail),
        (status = 400, description = "Not a device id, or an id found in several tenants", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such device among the caller's tenants", body = ErrorBody)
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeviceTenant>,
) -> Result<Json<DeviceDetail>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let found = resolve(&state, &caller, q.tenant.as_deref(), &id).await?;
    Ok(Json(DeviceDetail {
        device: Device::from(found.device),
        open_outages: found.open_outages,
    }))
}

/// The device of the caller's tenants with inventory id `id` (in `tenant` if named).
pub(crate) async fn resolve(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&str>,
    id: &str,
) -> Result<store::history::DeviceDetail, ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ApiError::bad_request(format!(
            "`{id}` is not a device id: ids are 1 to 64 letters, digits, `_`, `.` or `-`"
        )));
    }
    let tenants = caller.scope(tenant)?;
    let mut found = state
        .pool()
        .reads()
        .await?
        .devices_by_ext_id(&tenants, id)
        .await?;
    match found.len() {
        0 => Err(ApiError::not_found(format!("no device `{id}`"))),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::bad_request(format!(
            "device `{id}` exists in tenants {}; name one with tenant=",
            found
                .iter()
                .map(|d| d.device.tenant.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
