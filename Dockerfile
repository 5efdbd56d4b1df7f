# One image for every Vigil service: CPU torch, the default model baked in (int8 ONNX graph built at
# build time), a non-root user. Health checks are per service in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    XDG_CACHE_HOME=/opt/vigil/cache

WORKDIR /opt/vigil
# CPU build of torch first, pinned, so no CUDA wheels are pulled in.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY models ./models
COPY evaluators ./evaluators
COPY safety_gate ./safety_gate
COPY review ./review
RUN pip install . \
 && vigil model export \
 && useradd --system --uid 10001 --home-dir /opt/vigil vigil \
 && chown -R vigil:vigil /opt/vigil/cache

USER vigil
EXPOSE 8080 9101 9102
ENTRYPOINT ["vigil"]
CMD ["--help"]
