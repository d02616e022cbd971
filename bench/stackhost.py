"""Runs one tree's stack for the paired comparison (bench/paired.py): `python bench/stackhost.py '<json>'`, where
the JSON gives the tree (a git worktree or this one), an instance folder, the generated directory's size and the
workers per service. Imports come from that tree (its devstack, idp_mock, broker; its bench.directory), so the
stack is the tree's own; the servers are started exactly as `python -m bench` starts them. Prints one JSON line
(addresses, root process IDs, the emulator's keys, the generated users), then waits until its standard input
closes, and stops the stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

spec = json.loads(sys.argv[1])
tree = str(Path(spec["tree"]).resolve())
sys.path[0] = tree  # not this file's folder: the tree's packages come first (the venv's editable install after)
os.environ["PYTHONPATH"] = tree  # and in the servers it starts

from bench import directory as gen  # noqa: E402 - after the path is set
from devstack.stack import Stack, free_addresses  # noqa: E402


def main() -> int:
    instance = Path(spec["instance_dir"]).resolve()
    generated = instance / "generated"
    info = gen.generate(generated, spec["users"], spec["groups"])
    if not spec.get("scim", True):
        broker_config = Path(info["broker_config"])
        broker_config.write_text(re.sub(r"\n\s*scim:\n(\s+token[^\n]*\n)+", "\n", broker_config.read_text()))
        spec.setdefault("env", {})["IDP_SCIM_PUSH"] = "false"
    os.environ["IDP_CONFIG"], os.environ["BROKER_CONFIG"] = info["idp_config"], info["broker_config"]
    addresses = free_addresses(instance=False)
    state = instance / "stack"
    shutil.rmtree(state, ignore_errors=True)
    stack = Stack(state, addresses, workers=spec["workers"], extra_env={"LOG_LEVEL": "warning", **spec.get("env", {})})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print(
            json.dumps(
                {
                    "addresses": addresses,
                    "pids": {
                        "idp": stack.processes["idp"].pid,
                        "broker": stack.processes["broker"].pid,
                        "aws": stack.moto.pid,
                    },
                    "aws_env": stack.aws_env,
                    "instance_dir": str(stack.instance_dir),
                    "users": info["users"],
                }
            ),
            flush=True,
        )
        sys.stdin.read()  # until the benchmark closes it (or goes away)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
