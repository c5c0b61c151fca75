"""Writes schema-1.3.0.json: the OCSF 1.3.0 classes observer exports, with
base_event, every object they reach and the types, from the compiled OCSF
1.3.0 schema export shipped by the PyPI package ocsf-json-schema==1.2.0
(file ocsf_json_schema/ocsf/1.3.0.json). Descriptions are dropped; every
other member is kept as published.

    python3 -m venv /var/tmp/v && /var/tmp/v/bin/pip install ocsf-json-schema==1.2.0
    /var/tmp/v/bin/python extract.py /var/tmp/v/lib/python3.11/site-packages/ocsf_json_schema/ocsf/1.3.0.json
"""
import json
import sys

CLASSES = ["process_activity", "network_activity", "file_activity", "dns_activity", "detection_finding", "http_activity", "api_activity"]


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "description"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


s = json.load(open(sys.argv[1]))
assert s["version"] == "1.3.0", s["version"]
seen, todo = set(), []


def refs(attrs):
    todo.extend(a["object_type"] for a in attrs.values() if a.get("object_type"))


for c in CLASSES:
    refs(s["classes"][c]["attributes"])
refs(s["base_event"]["attributes"])
while todo:
    o = todo.pop()
    if o not in seen:
        seen.add(o)
        refs(s["objects"][o]["attributes"])
out = {
    "version": s["version"],
    "source": "ocsf-json-schema==1.2.0 (PyPI): ocsf_json_schema/ocsf/1.3.0.json, the OCSF 1.3.0 schema export",
    "licence": "Apache-2.0 (LICENSE beside this file)",
    "types": s["types"],
    "base_event": s["base_event"],
    "classes": {s["classes"][c]["uid"]: s["classes"][c] for c in CLASSES},
    "objects": {o: s["objects"][o] for o in sorted(seen)},
}
json.dump(strip(out), open("schema-1.3.0.json", "w"), indent=1, sort_keys=True)
