# liveblog app image: slim, non-root, health-checked on /readyz.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 liveblog
WORKDIR /app
COPY pyproject.toml README.md ./
COPY liveblog ./liveblog
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER liveblog
ENV LIVEBLOG_HOST=0.0.0.0 LIVEBLOG_PORT=8000 LIVEBLOG_DATA_DIR=/home/liveblog/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"
CMD ["liveblog", "serve"]
