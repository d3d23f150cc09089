# DeCOR Gateway container image: `decor run` as a non-root user, configured by
# /etc/decor/gateway.toml and DECOR_* environment variables, serving /metrics,
# /healthz and /readyz on port 9108. See docs/operations.md.
#
# Build:  docker build -t decor-gateway .
# Checked by hadolint in `make test` (tests/test_container_files.py); no image
# has been built on the project's machines, which cannot run Docker.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# OpenCV without GUI libraries, for the CCTV sampler; the same pin as the CCTV
# work, which adds it to the package's own dependencies.
ARG OPENCV_PACKAGE=opencv-python-headless==4.14.0.94
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY devices ./devices
RUN python -m venv /opt/decor \
    && /opt/decor/bin/pip install --no-cache-dir --no-compile . "${OPENCV_PACKAGE}"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="DeCOR Gateway" \
      org.opencontainers.image.description="City sensor and CCTV telemetry from MQTT into InfluxDB" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 decor \
    && useradd --system --uid 10001 --gid decor --home-dir /var/lib/decor \
       --create-home --shell /usr/sbin/nologin decor
COPY --from=build /opt/decor /opt/decor
COPY docker/gateway.toml /etc/decor/gateway.toml
# Secrets (DECOR_MQTT__PASSWORD, DECOR_INFLUX__TOKEN, ...) come from the
# environment at run time, never from the image.
ENV PATH=/opt/decor/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DECOR_LOG_FORMAT=json \
    DECOR_MONITORING__ENABLED=true \
    DECOR_MONITORING__HOST=0.0.0.0 \
    DECOR_MONITORING__PORT=9108
# Numeric, so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/decor
# Spool, dead letters and the registry database live here.
VOLUME ["/var/lib/decor"]
EXPOSE 9108
# /healthz answers while the event loop turns; /readyz is for orchestrators
# that route or alert on readiness.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["decor"]
CMD ["run", "--config", "/etc/decor/gateway.toml", "--no-summary"]
