//! The open standards' routes, outside `/api/v1`:
//!
//! - [`open311`]: Open311 GeoReport v2, `/open311/v2/...` (citizens' reports);
//! - [`gtfs_rt`]: GTFS-Realtime VehiclePositions, `GET /gtfs-rt/{tenant}/vehicle-positions.pb`;
//! - [`public_works`]: a published tenant's works for residents, without sign-in:
//!   GeoJSON `GET /public/{tenant}/works.geojson` and iCalendar `.../works.ics`, the
//!   status page `GET /public/{tenant}/` and its map's streets `.../map.geojson`;
//! - [`public_subscriptions`]: residents' e-mail subscriptions to its planned works, with
//!   double opt-in, `POST /public/{tenant}/subscriptions`.

pub mod gtfs_rt;
pub mod open311;
pub mod public_subscriptions;
pub mod public_works;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(gtfs_rt::vehicle_positions))
        .routes(routes!(open311::services))
        .routes(routes!(open311::service_definition))
        .routes(routes!(open311::requests, open311::create))
        .routes(routes!(open311::request))
        .routes(routes!(public_works::works_geojson))
        .routes(routes!(public_works::works_icalendar))
        .routes(routes!(public_works::base_map))
        .routes(routes!(public_works::status_page))
        .routes(routes!(public_works::status_page_moved))
        .routes(routes!(public_subscriptions::subscribe))
        .routes(routes!(
            public_subscriptions::confirm_page,
            public_subscriptions::confirm
        ))
        .routes(routes!(
            public_subscriptions::unsubscribe_page,
            public_subscriptions::unsubscribe
        ))
}
