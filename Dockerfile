# The geosaga image: `geosaga api`, `geosaga worker --region NAME`, `geosaga gateway`,
# `geosaga setup`, and the operator commands, all from the one console script.
# docker-compose.yml builds it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY foundation foundation
COPY regions regions
COPY activities activities
COPY workflows workflows
COPY orders orders
COPY worker worker
COPY api api
COPY gateway gateway
COPY geosaga geosaga
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data --create-home geosaga
USER geosaga
WORKDIR /data
ENV PYTHONUNBUFFERED=1 \
    GEOSAGA_DATA_DIR=/data
ENTRYPOINT ["geosaga"]
CMD ["--help"]
