FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir .
ENV QUOTACACHE_WEB__HOST=0.0.0.0
ENTRYPOINT ["quotacache"]
