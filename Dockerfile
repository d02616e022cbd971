# syntax=docker/dockerfile:1
# The project's image: the Example Corp IdP, the access portal, the AWS emulator (moto server) and the
# Employee Directory app (with its container credentials endpoint) all run from it, each with its own
# command (see docker-compose.yml). Build: `docker compose build`.
#
# Two stages: the builder turns the project and its pinned dependencies (requirements.lock) into
# wheels; the final stage installs them without pip's cache, from a bind mount (BuildKit), so neither
# the wheels nor any build tool end up in the image. It runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY broker ./broker
COPY broker_login ./broker_login
COPY idp_mock ./idp_mock
COPY sso_common ./sso_common
COPY devstack ./devstack
COPY employee_directory ./employee_directory
# Binary wheels from PyPI for every dependency (lxml and xmlsec share one libxml2), the project built here,
# with the AWS emulator (the compose stack runs moto from this image too).
RUN pip wheel --wheel-dir /wheels -c requirements.lock '.[emulator]'

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BROKER_CONFIG=/app/config/broker.yaml \
    IDP_CONFIG=/app/config/idp.yaml
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels --root-user-action=ignore 'sso-login-broker[emulator]'
# State (keys, sqlite files) lives under /var/lib/sso, on the compose file's named volumes.
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/sso --create-home --shell /usr/sbin/nologin sso \
    && install -d -o sso -g sso /var/lib/sso/idp /var/lib/sso/broker /var/lib/sso/aws /var/lib/sso/task \
       /var/lib/sso/directory
COPY config /app/config
WORKDIR /var/lib/sso
USER sso:sso
EXPOSE 8000 8001 8002 8003
CMD ["python", "-m", "broker", "serve", "--host", "0.0.0.0"]
