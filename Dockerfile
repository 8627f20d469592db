# The loopline worker image: one image, one `loopline ...` command per service.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY models ./models
COPY schemas ./schemas
COPY ops ./ops
# schemas/ and ops/ are linked under streams/resources: the installed package carries copies.
RUN pip install .

ENTRYPOINT []
CMD ["loopline", "--help"]
