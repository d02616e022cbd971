"""A hello-world app served by sso_common.serve that says how many objects its worker has frozen
(tests/sso_common/test_serving.py). `python -m tests.support.frozen_app PORT`"""

import gc
import sys

from flask import Flask

from sso_common.serve import serve


def make() -> Flask:
    app = Flask("frozen")
    app.get("/frozen")(lambda: str(gc.get_freeze_count()))
    return app


if __name__ == "__main__":
    serve(make, "127.0.0.1", int(sys.argv[1]), workers=1, access_log=False)
