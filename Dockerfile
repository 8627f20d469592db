# The loopline worker image: one image, one `loopline ...` command per service.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
COPY schemas ./schemas
COPY ops ./ops
# Editable, so that schemas/ and ops/ stay beside the packages that read them.
RUN pip install -e .

ENTRYPOINT []
CMD ["loopline", "--help"]
