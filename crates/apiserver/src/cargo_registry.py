"""Where the generators (`openapi/generate.py`, `protobuf/generate.py`) find crate sources:
the local cargo registry, read without network."""

import glob
import os
import sys

REG = os.path.join(os.path.expanduser(os.environ.get("CARGO_HOME", "~/.cargo")), "registry", "src")


def find_crate(name):
    """The source directory of crate `name` (`k8s-openapi-0.29.0`); exits if absent."""
    hits = sorted(glob.glob(os.path.join(REG, "*", name)))
    if not hits:
        sys.exit(f"crate source {name} not found under {REG} (run `cargo fetch`)")
    return hits[-1]
