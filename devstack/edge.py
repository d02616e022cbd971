"""The edge: nginx in front of the replicas, one configuration generated for compose and for the tests.

`nginx_config` writes it; `deploy/nginx.conf` is its output for the compose stack (tests/compose checks
that the file is what this module writes), and the tests and the benchmark generate theirs for free
ports. What it does, and why:

- **Round robin, no sticky sessions**: every replica can serve every request (state is shared), so a
  replica that dies costs only the requests in flight on it. A connection refused or a timeout before a
  request was sent goes to the next replica (`proxy_next_upstream error timeout`, at most 3 tries); a
  request already sent is never sent twice (nginx does not retry POSTs), and if its replica dies the person
  gets a 503 page that says to try again (`/edge-unavailable`, Retry-After), never a bare 502.
- **A replica that failed is skipped for 2 s, but never all of them**: after one failed connection nginx
  passes a replica nothing for `fail_timeout` (a dead one costs one failed connection per 2 s, not one per
  request: in compose a stopped container's address can take the 2 s connect timeout to fail). nginx keeps that
  failure until a request succeeds on the replica *after* the 2 s: a replica restarted and then passed nothing
  still counts as failed, and once the 2 s are over only one request at a time may try it. Killing the other
  replica then left nginx with no replica it would try: "no live upstreams", the 503 page for every request
  but that one (seen: 9 of 10 sign-ins, broker-1 healthy, broker-2 killed 11 s after broker-1's restart; a
  rolling restart under load hits it at every turn). So each upstream lists its replicas a second time, as
  `backup` servers without failure accounting (`max_fails=0`): nginx goes to them only when it would skip
  every replica, and tries them all. A replica down costs a request at most two tries (its entry and its
  backup's), hence 3 tries with one replica down; a single replica needs no backup (nginx never skips the
  only server).
- **Request buffering**: nginx reads a whole request body before a replica sees it (`proxy_request_buffering
  on`, bodies up to 256 KiB held in memory), and whole answers before a slow client reads them: a client
  that drips its head or its body holds an nginx connection, never an app thread (docs/architecture.md,
  "Serving": granian covered slow heads; this covers slow bodies too). Head and body must keep coming
  (10 s between reads), or the connection is closed.
- **HSTS under https**: on a TLS listener every answer carries Strict-Transport-Security (the apps behind
  it speak http and do not send it).
- **Headers**: `underscores_in_headers on`, so the AWS SSO portal API's `x-amz-sso_bearer_token` reaches
  the portal (nginx drops such headers by default). `X-Request-ID`: a well-formed one from the client is
  kept, otherwise nginx's `$request_id`; it goes to the replica and back to the client, and into nginx's
  access log. `X-Real-IP` is the connection's address (replacing whatever a client sent): the apps take it
  as the client's address from this proxy only (WEB_TRUSTED_PROXIES).
- **Not exposed**: `/metrics` and `/readyz` answer 404 at the edge; scrape and probe the replicas directly.
- Access log: path without query string (codes and state travel in query strings), request ID, which
  replicas were tried and what each answered (`upstream_status`: `502, 200` for a retried request). The error
  log takes only `crit` and worse: nginx writes the request line, query included, into every error line (an
  upstream refusing or dying mid-request is `error`), and the access log already says which replica failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_BODY = "256k"  # sso_common.web.MAX_REQUEST_BYTES: no legitimate request comes close
HSTS = "max-age=31536000"
RETRY_AFTER = 5
UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Temporarily unavailable</title></head>"
    "<body><main><h1>Temporarily unavailable</h1><p>The server that was handling this request stopped before "
    "it answered. Nothing was completed: try again in a few seconds.</p>"
    "<p><a href=/>Back to the start page</a></p></main></body></html>"
)


@dataclass(frozen=True)
class Site:
    """One public site: where nginx listens, and the replicas behind it (host:port)."""

    name: str  # upstream name: portal, idp
    listen: str  # what nginx's `listen` takes: "8000", "127.0.0.1:8000"
    replicas: tuple[str, ...]
    tls: tuple[str, str] | None = None  # (certificate, key) files: serve https and send HSTS


@dataclass(frozen=True)
class EdgeConfig:
    sites: tuple[Site, ...]
    prefix: Path | None = None  # logs, pid and temporary files here (tests); None: the image's defaults
    worker_processes: int | str = "auto"
    resolve: bool = False  # re-resolve replica names at run time (nginx >= 1.27.3, Docker's DNS)
    resolver: str = "127.0.0.11"  # Docker's embedded DNS
    user: str | None = None  # the workers' user (the nginx image has `nginx`); None: nginx's default


def _paths(config: EdgeConfig) -> tuple[str, str, str, list[str]]:
    if config.prefix is None:
        return "/dev/stderr", "/dev/stdout", "/tmp/nginx.pid", []
    prefix = config.prefix
    temp = [
        f"    client_body_temp_path {prefix}/tmp/body;",
        f"    proxy_temp_path {prefix}/tmp/proxy;",
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"    scgi_temp_path {prefix}/tmp/scgi;",
    ]
    return f"{prefix}/logs/error.log", f"{prefix}/logs/access.log", f"{prefix}/nginx.pid", temp


def _headers(site: Site) -> list[str]:
    """add_header lines: repeated in every location that adds its own (nginx does not inherit them then)."""
    lines = ["        add_header X-Request-ID $sso_request_id always;"]
    if site.tls:
        lines.append(f'        add_header Strict-Transport-Security "{HSTS}" always;')
    return lines


def _server(site: Site) -> list[str]:
    listen = f"{site.listen} ssl" if site.tls else str(site.listen)
    lines = ["    server {", f"        listen {listen};", "        server_name _;"]
    if site.tls:
        lines += [f"        ssl_certificate {site.tls[0]};", f"        ssl_certificate_key {site.tls[1]};"]
    lines += [
        *_headers(site),
        "        location = /metrics { return 404; }",
        "        location = /readyz { return 404; }",
        "        location / {",
        f"            proxy_pass http://{site.name};",
        "        }",
        "        error_page 502 504 =503 /edge-unavailable;",
        "        location = /edge-unavailable {",
        "            internal;",
        "            default_type text/html;",
        *("    " + line for line in _headers(site)),
        f"            add_header Retry-After {RETRY_AFTER} always;",
        "            add_header Cache-Control no-store always;",
        f"            return 503 '{UNAVAILABLE_PAGE}';",
        "        }",
        "    }",
    ]
    return lines


def nginx_config(config: EdgeConfig) -> str:
    error_log, access_log, pid, temp = _paths(config)
    upstreams: list[str] = []
    for site in config.sites:
        resolve = " resolve" if config.resolve else ""
        upstreams += [
            f"    upstream {site.name} {{",
            *([f"        zone {site.name} 64k;"] if config.resolve else []),
            *(f"        server {replica} max_fails=1 fail_timeout=2s{resolve};" for replica in site.replicas),
            # the same replicas, when nginx would skip every one of them above (the docstring says why)
            *(
                f"        server {replica} backup max_fails=0{resolve};"
                for replica in (site.replicas if len(site.replicas) > 1 else ())
            ),
            "        keepalive 32;",
            "    }",
        ]
    lines = [
        "# Generated by devstack/edge.py (its docstring says what each part is for). Do not edit by hand:",
        "# change the generator; tests/compose checks that deploy/nginx.conf is its output.",
        *([f"user {config.user};"] if config.user else []),
        f"worker_processes {config.worker_processes};",
        f"pid {pid};",
        f"error_log {error_log} crit;",
        "events { worker_connections 4096; }",
        "http {",
        *temp,
        "    server_tokens off;",
        "    underscores_in_headers on;",
        "    client_header_timeout 10s;",
        "    client_body_timeout 10s;",
        "    send_timeout 30s;",
        "    keepalive_timeout 30s;",
        f"    client_max_body_size {MAX_BODY};",
        f"    client_body_buffer_size {MAX_BODY};",
        "    proxy_request_buffering on;",
        "    proxy_buffering on;",
        "    proxy_buffer_size 16k;",
        "    proxy_buffers 32 16k;",
        "    proxy_busy_buffers_size 32k;",
        "    proxy_max_temp_file_size 0;",
        "    proxy_http_version 1.1;",
        "    proxy_connect_timeout 2s;",
        "    proxy_send_timeout 30s;",
        "    proxy_read_timeout 30s;",
        "    proxy_next_upstream error timeout;",
        "    proxy_next_upstream_tries 3;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header X-Request-ID $sso_request_id;",
        "    proxy_hide_header X-Request-ID;  # the replica's copy: nginx adds the same ID to every answer",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $remote_addr;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        *([f"    resolver {config.resolver} valid=10s ipv6=off;"] if config.resolve else []),
        "    map $http_x_request_id $sso_request_id {",
        '        "~^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$" $http_x_request_id;',
        "        default $request_id;",
        "    }",
        # the path asked for, without its query (codes, states): $uri would name the 503 page after an error_page
        "    map $request_uri $sso_request_path {",
        '        "~^(?<path>[^?]*)" $path;',
        "    }",
        "    log_format edge '$remote_addr \"$request_method $sso_request_path\" $status $body_bytes_sent '",
        "                    '$request_time request_id=$sso_request_id upstream=$upstream_addr '",
        "                    'upstream_status=$upstream_status';",
        f"    access_log {access_log} edge;",
        *upstreams,
        *(line for site in config.sites for line in _server(site)),
        "}",
        "",
    ]
    return "\n".join(lines)


COMPOSE = EdgeConfig(
    sites=(
        Site("portal", "8000", ("broker-1:8100", "broker-2:8101")),
        Site("idp", "8001", ("idp-1:8110", "idp-2:8111")),
    ),
    resolve=True,
    user="nginx",
)
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"


def main() -> None:
    """Write deploy/nginx.conf (the compose stack's edge) from this module."""
    COMPOSE_FILE.parent.mkdir(exist_ok=True)
    COMPOSE_FILE.write_text(nginx_config(COMPOSE))
    print(f"wrote {COMPOSE_FILE}")


if __name__ == "__main__":
    main()
