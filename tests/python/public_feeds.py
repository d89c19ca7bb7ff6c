"""Reads a public works feed from standard input with reference libraries, not ours, and
prints what it holds as JSON. `geojson`: the `geojson` package checks it is valid GeoJSON
(RFC 7946) and gives its features. `ics`: the `icalendar` package parses it (RFC 5545) and
gives its events. Exits non-zero if the document is not valid."""

import json
import sys


def read_geojson(text):
    import geojson

    doc = geojson.loads(text)
    if not doc.is_valid:
        raise SystemExit("not valid GeoJSON: %s" % doc.errors())
    if doc["type"] != "FeatureCollection":
        raise SystemExit("not a FeatureCollection: %s" % doc["type"])
    return {
        "tenant": doc.get("tenant"),
        "name": doc.get("name"),
        "districts": doc.get("districts"),
        "subscriptions": doc.get("subscriptions"),
        "generated_at": doc.get("generated_at"),
        "features": [
            {
                "id": f.get("id"),
                "geometry": f["geometry"] and {
                    "type": f["geometry"]["type"],
                    "coordinates": f["geometry"]["coordinates"],
                },
                "properties": f["properties"],
            }
            for f in doc["features"]
        ],
    }


def read_ics(text):
    import icalendar

    cal = icalendar.Calendar.from_ical(text)
    if cal.name != "VCALENDAR":
        raise SystemExit("not a VCALENDAR: %s" % cal.name)
    events = []
    for e in cal.walk("VEVENT"):
        end = e.get("DTEND")
        events.append({
            "uid": str(e["UID"]),
            "summary": str(e["SUMMARY"]),
            "location": str(e.get("LOCATION", "")),
            "start": e["DTSTART"].dt.isoformat(),
            "end": end.dt.isoformat() if end else None,
        })
    return {"version": str(cal.get("VERSION")), "events": events}


def main():
    text = sys.stdin.read()
    kind = sys.argv[1]
    out = read_geojson(text) if kind == "geojson" else read_ics(text)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
