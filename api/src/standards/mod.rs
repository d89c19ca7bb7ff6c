//! The open standards' routes, outside `/api/v1`:
//!
//! - [`gtfs_rt`]: GTFS-Realtime VehiclePositions, `GET /gtfs-rt/{tenant}/vehicle-positions.pb`.

pub mod gtfs_rt;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(gtfs_rt::vehicle_positions))
}
