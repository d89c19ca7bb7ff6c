"""Decodes a GTFS-Realtime feed from standard input with Google's own bindings
(gtfs-realtime-bindings) and prints what it holds as JSON, for the tests to compare with
what was published. Exits non-zero if the bytes are not a valid FeedMessage."""

import json
import sys

from google.transit import gtfs_realtime_pb2


def opt(message, field):
    return getattr(message, field) if message.HasField(field) else None


def main():
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.ParseFromString(sys.stdin.buffer.read())
    header = feed.header
    out = {
        "gtfs_realtime_version": header.gtfs_realtime_version,
        "incrementality": gtfs_realtime_pb2.FeedHeader.Incrementality.Name(header.incrementality),
        "timestamp": opt(header, "timestamp"),
        "entities": [],
    }
    for entity in feed.entity:
        v = entity.vehicle
        out["entities"].append({
            "id": entity.id,
            "has_vehicle": entity.HasField("vehicle"),
            "vehicle_id": opt(v.vehicle, "id"),
            "latitude": opt(v.position, "latitude"),
            "longitude": opt(v.position, "longitude"),
            "bearing": opt(v.position, "bearing"),
            "speed": opt(v.position, "speed"),
            "route_id": opt(v.trip, "route_id"),
            "trip_id": opt(v.trip, "trip_id"),
            "timestamp": opt(v, "timestamp"),
            "occupancy_percentage": opt(v, "occupancy_percentage"),
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
