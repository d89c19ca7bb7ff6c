//! Citizen reports (Open311 GeoReport v2) and the notifications of changes.

/// Migration 8: service requests and change notifications.
pub const MIGRATION: &str = "SELECT 1;";
