# Onyx images. The default (last) target is the serving image: ONNX Runtime + gRPC, no torch.
#
#   docker build -t onyx:serve .                    # serving image
#   docker build -t onyx:train --target train .     # with torch, for train/export
#   docker run -p 50051:50051 -p 8000:8000 -p 8002:8002 -v "$PWD/models:/models" onyx:serve
#   docker build --target smoke .                   # serve a tiny model inside the image, check it
#
# BASE_IMAGE may point at a locally built Debian/Python base where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build: the serving wheel, from serve/ alone ----------------------------------------------
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY serve ./serve
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./serve

# ---- build-train: the training sidecar's wheel, from train/ ----------------------------------
FROM ${BASE_IMAGE} AS build-train
WORKDIR /src
COPY train ./train
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./train

# ---- train: both wheels with torch, for `onyx train` / `onyx export` ---------------------------
FROM ${BASE_IMAGE} AS train
COPY --from=build /wheels /wheels
COPY --from=build-train /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --create-home onyx
USER 10001
WORKDIR /home/onyx
ENTRYPOINT ["onyx"]
CMD ["--help"]

# ---- serve: the runtime image (default): no compiler, non-root ---------------------------------
FROM ${BASE_IMAGE} AS serve
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ONYX_REPOSITORY=/models \
    ONYX_PORT=50051 \
    ONYX_HTTP_PORT=8000 \
    ONYX_METRICS_PORT=8002
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home onyx \
    && mkdir -p /models \
    && chown 10001 /models \
    && python -c "import importlib.util as u, onyx.serve.server, onyx.bench.cli; \
assert u.find_spec('torch') is None, 'torch in the serving image'"
USER 10001
WORKDIR /models
# gRPC, KServe v2 REST, Prometheus /metrics (Triton's and KServe's port numbers).
EXPOSE 50051 8000 8002
# Readiness (every model loaded), on whatever port ONYX_PORT says: onyx/client/probe.py.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-m", "onyx.client.probe"]
ENTRYPOINT ["onyx"]
CMD ["serve"]

# ---- smoke (build with --target smoke): the serving image answers over gRPC -----------------
# Where no container can run, this is how a built image is checked: the test runs as a build
# step, inside the image, as its user. Unused by a normal build.
FROM serve AS smoke
USER root
RUN pip install --no-cache-dir "onnx==1.23.2"
COPY tests/serve/tiny_models.py /smoke/tests/serve/
COPY scripts/image_smoke.py /smoke/
USER 10001
RUN python /smoke/image_smoke.py

# ---- the default target is the serving image ------------------------------------------------
FROM serve
