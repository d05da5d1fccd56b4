# mediator: the same install as the README quick start, in a container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY mediator ./mediator
RUN pip install --no-cache-dir .
COPY config.yaml ./
COPY channels ./channels
COPY mappings ./mappings

RUN useradd --system --home /app mediator && mkdir -p /data && chown mediator /data
USER mediator
VOLUME ["/data"]
EXPOSE 8080 2575
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz')"
CMD ["mediator", "serve", "--config", "/app/config.yaml", "--data-dir", "/data"]
