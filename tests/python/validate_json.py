"""Validates JSON documents against a JSON Schema with the `jsonschema` library (an
implementation independent of cityhub's). Usage: validate_json.py SCHEMA FILE...; prints
one line per file, `ok` or `invalid: <first error>`, and exits 0 when every file is valid."""

import json
import sys

from jsonschema import Draft202012Validator


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    failed = False
    for path in sys.argv[2:]:
        with open(path) as f:
            doc = json.load(f)
        error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.path))), None)
        if error is None:
            print(f"{path}: ok")
        else:
            failed = True
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{path}: invalid at {where}: {error.message}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
