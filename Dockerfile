# syntax=docker/dockerfile:1
# The sloscale operator image: `sloscale run` on a slim Python, as a non-root user.
#
#   docker build -t sloscale/sloscale:0.1.0 .
#
# Stage one installs the locked runtime dependencies (requirements/operator.txt, hashes checked,
# wheels only) and the package into a virtual environment; stage two copies only that environment
# onto a fresh base. No compiler, pip cache, sources, tests, sandbox or bench dependencies — and no
# torch or vLLM — reach the final image. tests/image runs the same RUN steps in a clean venv.

ARG PYTHON_VERSION=3.11.14
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
ENV VENV=/opt/sloscale \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/operator.txt requirements/operator.txt
RUN python -m venv "$VENV" \
 && "$VENV/bin/pip" install --require-hashes --no-deps --only-binary=:all: -r requirements/operator.txt
COPY pyproject.toml README.md ./
COPY operator/sloscale/ operator/sloscale/
RUN "$VENV/bin/pip" install --no-deps . \
 && "$VENV/bin/pip" check

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
ARG PYTHON_VERSION
ARG DEBIAN_RELEASE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sloscale" \
      org.opencontainers.image.description="Kubernetes operator that autoscales vLLM inference to a declared latency or throughput objective" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="sloscale" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}"
# A fixed uid/gid (the chart's runAsUser) with no home and no shell.
RUN groupadd --system --gid 65532 sloscale \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sloscale
COPY --from=build /opt/sloscale /opt/sloscale
# The root filesystem is read-only in the cluster: bytecode was compiled at install time, and the
# only writable place is /tmp (an emptyDir in the chart).
ENV PATH=/opt/sloscale/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["sloscale", "run"]
