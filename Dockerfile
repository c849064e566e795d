FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY producer ./producer
RUN pip install --no-cache-dir .
ENV MMQ_STORAGE_URL=file:///data
VOLUME ["/data"]
ENTRYPOINT ["mmq"]
