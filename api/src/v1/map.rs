//! What the dashboard's map draws under the assets: the city's tile server, if it has
//! one, and the base map (district outlines and streets, GeoJSON) named in the
//! configuration (`dashboard.base_map`, `dashboard.tile_url`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::roles::Permission;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(settings))
        .routes(routes!(base_map))
}

/// The map's layers under the assets.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapSettings {
    /// A raster tile URL template (`{z}`, `{x}`, `{y}`), when the city has a tile server.
    pub tile_url: Option<String>,
    /// The credit line the tile server asks for.
    pub tile_attribution: Option<String>,
    /// Whether `GET /api/v1/map/base` has a base map to give.
    pub base_map: bool,
}

/// The map's layers: tile server and base map.
#[utoipa::path(
    get,
    path = "/map",
    operation_id = "map_settings",
    tag = "devices",
    responses(
        (status = 200, description = "The map's layers", body = MapSettings),
        (status = 401, description = "Not signed in", body = ErrorBody)
    )
)]
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MapSettings>, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let d = state.dashboard();
    Ok(Json(MapSettings {
        tile_url: d.tile_url.clone(),
        tile_attribution: d.tile_attribution.clone(),
        base_map: d.base_map.is_some(),
    }))
}

/// The base map: a GeoJSON FeatureCollection of district outlines (`layer: district`),
/// streets (`layer: street`) and bus routes (`layer: route`).
#[utoipa::path(
    get,
    path = "/map/base",
    operation_id = "base_map",
    tag = "devices",
    responses(
        (status = 200, description = "The base map", content_type = "application/geo+json"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No base map is configured", body = ErrorBody)
    )
)]
pub async fn base_map(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::ReadDevices)?;
    let Some(path) = state.dashboard().base_map.clone() else {
        return Err(ApiError::not_found(
            "no base map is configured (dashboard.base_map)",
        ));
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal("reading the base map", &e))?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], bytes))
}
