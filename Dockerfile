# Image for compose.yaml's web, worker and beat services.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 photomarker
WORKDIR /app
COPY pyproject.toml README.md ./
COPY plugin plugin
COPY fhir_mappings fhir_mappings
COPY workers workers
COPY models models
COPY audit audit
# gunicorn serves `photomarker web`; psycopg talks to the PostgreSQL audit and job stores.
# (Both belong in pyproject's dependencies; listed here until they are.)
RUN pip install --no-cache-dir . "gunicorn>=23,<28" "psycopg[binary]>=3.1,<4"
RUN mkdir -p /var/lib/photomarker /models && chown photomarker /var/lib/photomarker
USER photomarker
ENV PHOTOMARKER_DATA_DIR=/var/lib/photomarker
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)" || exit 1
CMD ["photomarker", "serve", "--host", "0.0.0.0", "--port", "8000"]
