//! GTFS-Realtime VehiclePositions: `GET /gtfs-rt/{tenant}/vehicle-positions.pb`, the newest
//! position of every vehicle of a tenant as a FeedMessage (full dataset).
//!
//! The messages are the part of the official `gtfs-realtime.proto` this feed uses
//! (<https://github.com/google/transit/blob/master/gtfs-realtime/proto/gtfs-realtime.proto>,
//! proto2, package `transit_realtime`), written out with prost's derive macros: the field
//! numbers and types below are the proto's; fields the feed never sets are left out, which
//! proto2 readers accept. No protoc runs at build time.

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prost::Message;
use serde::{Deserialize, Serialize};
use store::transit_feed::VehiclePositionRow;
use utoipa::IntoParams;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::roles::Permission;
use crate::AppState;

/// `FeedMessage`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct FeedMessage {
    #[prost(message, required, tag = "1")]
    pub header: FeedHeader,
    #[prost(message, repeated, tag = "2")]
    pub entity: Vec<FeedEntity>,
}

/// `FeedHeader`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct FeedHeader {
    #[prost(string, required, tag = "1")]
    pub gtfs_realtime_version: String,
    /// `Incrementality`.
    #[prost(enumeration = "Incrementality", optional, tag = "2")]
    pub incrementality: Option<i32>,
    /// POSIX seconds.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
}

/// `FeedHeader.Incrementality`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Incrementality {
    FullDataset = 0,
    Differential = 1,
}

/// `FeedEntity` (vehicle positions only: `trip_update` = 3 and `alert` = 5 are not sent).
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct FeedEntity {
    #[prost(string, required, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "4")]
    pub vehicle: Option<VehiclePosition>,
}

/// `VehiclePosition`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct VehiclePosition {
    #[prost(message, optional, tag = "1")]
    pub trip: Option<TripDescriptor>,
    #[prost(message, optional, tag = "2")]
    pub position: Option<Position>,
    /// POSIX seconds of the position.
    #[prost(uint64, optional, tag = "5")]
    pub timestamp: Option<u64>,
    #[prost(message, optional, tag = "8")]
    pub vehicle: Option<VehicleDescriptor>,
    #[prost(uint32, optional, tag = "10")]
    pub occupancy_percentage: Option<u32>,
}

/// `Position`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Position {
    #[prost(float, required, tag = "1")]
    pub latitude: f32,
    #[prost(float, required, tag = "2")]
    pub longitude: f32,
    /// Degrees clockwise from true north.
    #[prost(float, optional, tag = "3")]
    pub bearing: Option<f32>,
    /// Metres per second.
    #[prost(float, optional, tag = "5")]
    pub speed: Option<f32>,
}

/// `TripDescriptor`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct TripDescriptor {
    #[prost(string, optional, tag = "1")]
    pub trip_id: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub route_id: Option<String>,
}

/// `VehicleDescriptor`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct VehicleDescriptor {
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub label: Option<String>,
}

/// The feed of `rows`, made at `now` (POSIX seconds).
pub fn feed(rows: &[VehiclePositionRow], now: u64) -> FeedMessage {
    FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            incrementality: Some(Incrementality::FullDataset as i32),
            timestamp: Some(now),
        },
        entity: rows
            .iter()
            .map(|v| FeedEntity {
                id: v.ext_id.clone(),
                vehicle: Some(VehiclePosition {
                    trip: (v.route.is_some() || v.trip.is_some()).then(|| TripDescriptor {
                        trip_id: v.trip.clone(),
                        route_id: v.route.clone(),
                    }),
                    position: Some(Position {
                        latitude: v.lat as f32,
                        longitude: v.lon as f32,
                        bearing: v.bearing_deg.map(|b| b as f32),
                        speed: v.speed_mps.map(|s| s as f32),
                    }),
                    timestamp: u64::try_from(v.ts.timestamp()).ok(),
                    vehicle: Some(VehicleDescriptor {
                        id: Some(v.ext_id.clone()),
                        label: Some(v.ext_id.clone()),
                    }),
                    occupancy_percentage: v
                        .occupancy_pct
                        .filter(|p| p.is_finite() && *p >= 0.0)
                        .map(|p| p.round() as u32),
                }),
            })
            .collect(),
    }
}

/// How to answer.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedFormat {
    /// `pb` (Protocol Buffers, the default) or `json` (the same message, for reading).
    pub format: Option<String>,
}

/// The newest position of each vehicle of a tenant, as GTFS-Realtime VehiclePositions
/// (a full dataset). Needs a token or session of a user of that tenant, unless the hub
/// publishes that tenant's feed (`http.public_feeds`).
#[utoipa::path(
    get,
    path = "/gtfs-rt/{tenant}/vehicle-positions.pb",
    operation_id = "gtfs_rt_vehicle_positions",
    tag = "gtfs-realtime",
    params(("tenant" = String, Path, description = "A tenant slug (one of the caller's)"), FeedFormat),
    responses(
        (status = 200, description = "A GTFS-Realtime FeedMessage (as JSON with format=json)", content(
            (Vec<u8> = "application/x-protobuf"),
            (Object = "application/json")
        )),
        (status = 400, description = "An unknown format", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The tenant is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn vehicle_positions(
    State(state): State<AppState>,
    mut parts: Parts,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(f): ApiQuery<FeedFormat>,
) -> Result<Response, ApiError> {
    let json = match f.format.as_deref() {
        None | Some("pb") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be pb or json, not `{other}`"
            )))
        }
    };
    let tenant_id = if state.feed_is_public(&tenant) {
        state
            .pool()
            .reads()
            .await?
            .tenant_id(&tenant)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no tenant `{tenant}`")))?
    } else {
        let caller = Caller::from_request_parts(&mut parts, &state).await?;
        caller.require(Permission::ReadDevices)?;
        caller.scope(Some(&tenant))?[0]
    };
    let rows = state
        .pool()
        .reads()
        .await?
        .vehicle_positions(tenant_id)
        .await?;
    let now = u64::try_from(state.now().to_datetime().timestamp()).unwrap_or(0);
    let message = feed(&rows, now);
    if json {
        return Ok(Json(message).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        message.encode_to_vec(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_encodes_and_decodes() {
        let row = VehiclePositionRow {
            ext_id: "V1".into(),
            route: Some("28".into()),
            trip: None,
            lat: 38.7,
            lon: -9.1,
            bearing_deg: Some(90.0),
            speed_mps: None,
            occupancy_pct: Some(40.4),
            ts: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let message = feed(&[row], 1_700_000_005);
        let bytes = message.encode_to_vec();
        let back = FeedMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, message);
        let v = back.entity[0].vehicle.as_ref().unwrap();
        assert_eq!(v.timestamp, Some(1_700_000_000));
        assert_eq!(v.occupancy_percentage, Some(40));
        assert_eq!(v.trip.as_ref().unwrap().route_id.as_deref(), Some("28"));
        // The header's first field: tag 1, length-delimited, "2.0".
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(&bytes[2..7], &[0x0a, 0x03, b'2', b'.', b'0']);
    }
}
