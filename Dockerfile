# crontick on Cloud Run: gunicorn serving main:app on 0.0.0.0:$PORT (Cloud Run sets PORT; 8080 otherwise).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8080

WORKDIR /app

# Dependencies in their own layer: a code change does not reinstall them. The runtime lock
# (`make lock`: every package pinned with its hashes), so each build installs the same files.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# An unprivileged user; the code stays root-owned and read-only to it. data/ is the
# JSON store's default directory (SCHEDULER_JSON_PATH=./data/jobs.json), writable by the user.
RUN groupadd --system --gid 10001 crontick \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin crontick \
    && install -d -o crontick -g crontick /app/data

COPY . ./

# Bytecode now, at build time: the runtime user cannot write __pycache__ (and
# PYTHONDONTWRITEBYTECODE says not to), so without this every cold start compiled
# crontick's own modules from source again (about 80 ms of it on a 2-core machine).
# Then the `crontick` command (= flask --app main; web/cli_entry.py), for operators'
# `docker run IMAGE crontick jobs list` and Cloud Run jobs.
RUN python -m compileall -q -x '/(tests|bench)/' /app \
    && python -m web.cli_entry --write-launcher /usr/local/bin/crontick

USER 10001:10001
EXPOSE 8080

# No --bind: gunicorn binds 0.0.0.0:$PORT when PORT is set, so the exec form needs no shell.
# --timeout 0: Cloud Run ends slow requests itself; --graceful-timeout 8 fits its 10 s SIGTERM grace.
CMD ["gunicorn", "--workers", "1", "--threads", "8", "--timeout", "0", "--graceful-timeout", "8", "main:app"]
