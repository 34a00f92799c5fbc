#!/usr/bin/env python3
"""Generates `definitions.tsv`: the OpenAPI schema of every type of Kubernetes 1.33,
one line per definition: `name<TAB>group<TAB>version<TAB>kind<TAB>schema`, where the
group/version/kind are empty for types that are not resources and `schema` is compact
JSON in OpenAPI v2 form (`"$ref": "#/definitions/<name>"`, with a sibling `description`
where the field documents itself).

Source (read from the local cargo registry, no network): k8s-openapi 0.29.0, feature
v1_33: its `schemars` implementations, which k8s-openapi generates from upstream's
swagger.json, and its `Resource` implementations for the group/version/kind. List kinds
(`PodList`, ...), generic in k8s-openapi, are written out as upstream's swagger has them.

Run from anywhere: `python3 crates/apiserver/src/openapi/generate.py` (`--check` only
verifies that definitions.tsv is current; a test runs that).
"""

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "definitions.tsv")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(HERE))
from cargo_registry import find_crate  # noqa: E402


ROOT = os.path.join(find_crate("k8s-openapi-0.29.0"), "src", "v1_33")

SUB_DESC = re.compile(
    r'\(\{\s*let mut schema_obj = __gen\.subschema_for::<crate::([a-z0-9_:]+)::([A-Za-z0-9]+)>\(\);\s*'
    r'schema_obj\.ensure_object\(\)\.insert\("description"\.into\(\), ("(?:[^"\\]|\\.)*")\.into\(\)\);\s*'
    r'schema_obj\s*\}\)',
    re.S,
)
SUB = re.compile(r"\(?__gen\.subschema_for::<crate::([a-z0-9_:]+)::([A-Za-z0-9]+)>\(\)(\))?")


def block(text, start):
    """The `{...}` starting at `start`, strings respected."""
    depth, i, in_str = 0, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    raise ValueError("unbalanced block")


def drop_trailing_commas(text):
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c == ",":
            j = i + 1
            while text[j] in " \t\r\n":
                j += 1
            if text[j] not in "}]":
                out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def main():
    names = {}  # "api::core::v1::Pod" -> definition name
    bodies = {}  # definition name -> raw block text
    gvks = {}  # definition name -> (group, version, kind)
    lists = {}  # definition name of a list -> item definition name
    for path in sorted(glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True)):
        rel = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, "::")
        text = open(path).read()
        for m in re.finditer(r"impl crate::schemars::JsonSchema for ([A-Za-z0-9]+) \{", text):
            ty = m.group(1)
            rest = text[m.end() :]
            name = re.search(r'fn schema_name\(\)[^{]*\{\s*"([^"]+)"', rest).group(1)
            names[f"{rel}::{ty}"] = name
            at = rest.index("json_schema!(") + len("json_schema!(")
            bodies[name] = block(rest, at)
        for m in re.finditer(r"impl crate::Resource for ([A-Za-z0-9]+) \{(.*?)\n\}", text, re.S):
            consts = dict(re.findall(r'const ([A-Z_]+): &\'static str = "([^"]*)";', m.group(2)))
            key = f"{rel}::{m.group(1)}"
            gvks[key] = (consts["GROUP"], consts["VERSION"], consts["KIND"])
            if re.search(r"impl crate::ListableResource for " + m.group(1) + r"\b", text):
                lists[key] = consts["KIND"] + "List"

    def ref(mod, ty):
        return "#/definitions/" + names[f"{mod}::{ty}"]

    out = {}
    for name, raw in bodies.items():
        raw = SUB_DESC.sub(lambda m: '{"$ref": "%s", "description": %s}' % (ref(m.group(1), m.group(2)), m.group(3)), raw)
        raw = SUB.sub(
            lambda m: '{"$ref": "%s"}' % ref(m.group(1), m.group(2))
            if (m.group(0).startswith("(")) == bool(m.group(3))
            else sys.exit("unbalanced subschema: " + m.group(0)),
            raw,
        )
        raw = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: "\\u%04x" % int(m.group(1), 16), raw)
        raw = raw.replace("\\'", "'")
        try:
            out[name] = json.loads(drop_trailing_commas(raw))
        except json.JSONDecodeError as e:
            sys.exit(f"{name}: {e}\n{raw[:400]}")
    rows = []
    for key, name in names.items():
        g, v, k = gvks.get(key, ("", "", ""))
        schema = out[name]
        if k:
            schema["x-kubernetes-group-version-kind"] = [{"group": g, "kind": k, "version": v}]
        rows.append((name, g, v, k, schema))
        if key in lists:
            list_name = name + "List"
            list_schema = {
                "description": f"{lists[key]} is a list of {k} objects.",
                "properties": {
                    "apiVersion": out[name]["properties"]["apiVersion"],
                    "items": {"description": f"items is the list of {k} objects.",
                              "items": {"$ref": "#/definitions/" + name}, "type": "array"},
                    "kind": out[name]["properties"]["kind"],
                    "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
                                 "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
                },
                "required": ["items"],
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": g, "kind": lists[key], "version": v}],
            }
            rows.append((list_name, g, v, lists[key], list_schema))
    rows.sort(key=lambda r: r[0])
    text = "".join(
        "\t".join([n, g, v, k, json.dumps(s, separators=(",", ":"), sort_keys=True, ensure_ascii=False)]) + "\n"
        for n, g, v, k, s in rows
    )
    if "--check" in sys.argv:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            sys.exit("definitions.tsv is stale: run crates/apiserver/src/openapi/generate.py")
        return
    with open(OUT, "w") as f:
        f.write(text)


main()
