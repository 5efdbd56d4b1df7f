# Two images from one file.
#   gate (target `gate`): the HTTP gate alone, `pip install .[gate]`: no torch, no Kafka client, no model.
#   vigil (the default, last stage): every service: CPU torch, the default model baked in (int8 ONNX graph
#   built at build time). Both run as a non-root user; health checks are per service in docker-compose.yml.

FROM python:3.11-slim AS gate
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/vigil
COPY pyproject.toml README.md ./
# The gate's packages only: the kernel, the gate and the command that serves it.
COPY vigil_core ./vigil_core
COPY safety_gate ./safety_gate
COPY vigil ./vigil
RUN pip install '.[gate]' \
 && useradd --system --uid 10001 --home-dir /opt/vigil vigil
USER vigil
EXPOSE 8080
ENTRYPOINT ["vigil"]
CMD ["gate", "serve", "--host", "0.0.0.0", "--port", "8080"]

FROM python:3.11-slim AS vigil
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    XDG_CACHE_HOME=/opt/vigil/cache
WORKDIR /opt/vigil
# CPU build of torch first, pinned, so no CUDA wheels are pulled in.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY vigil_core ./vigil_core
COPY safety_gate ./safety_gate
COPY models ./models
COPY evaluators ./evaluators
COPY kafka_io ./kafka_io
COPY pipeline ./pipeline
COPY incidents ./incidents
COPY review ./review
COPY demo ./demo
COPY vigil ./vigil
RUN pip install '.[scorer,review]' \
 && vigil model export \
 && useradd --system --uid 10001 --home-dir /opt/vigil vigil \
 && chown -R vigil:vigil /opt/vigil/cache
USER vigil
EXPOSE 8000 9101 9102
ENTRYPOINT ["vigil"]
CMD ["--help"]
