FROM python:3.11-slim
WORKDIR /app
# the optional features to install (pyproject extras): all = s3 (MinIO/S3 storage, which the compose file
# uses), bedrock (SigV4 for AWS Bedrock targets) and embedded (`mmq run`); e.g. --build-arg MMQ_EXTRAS=s3
ARG MMQ_EXTRAS=all
COPY pyproject.toml README.md ./
COPY mmq ./mmq
COPY worker ./worker
COPY producer ./producer
RUN pip install --no-cache-dir ".[${MMQ_EXTRAS}]"
ENV MMQ_STORAGE_URL=file:///data
VOLUME ["/data"]
ENTRYPOINT ["mmq"]
