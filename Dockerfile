# Image for compose.yaml's web and worker services (first sketch).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 photomarker
WORKDIR /app
COPY pyproject.toml README.md ./
COPY plugin plugin
COPY fhir_mappings fhir_mappings
COPY workers workers
COPY models models
COPY audit audit
RUN pip install --no-cache-dir .
USER photomarker
ENV PHOTOMARKER_DATA_DIR=/var/lib/photomarker
