# One image per service, all from this file. Build from the repository root, naming the service:
#   docker build --build-arg SERVICE=returns -t aftersales-returns .
# (returns, complaints, followup, notifier or refunds; `console` for the operations console,
# run as `aftersales console`). The development tools (aftersales_dev)
# are not copied: no image carries them.
FROM python:3.11-slim-bookworm AS build
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY shared/ shared/
COPY services/ services/
COPY aftersales/ aftersales/
# Only this service's dependencies (its extra), pinned by the constraints file.
RUN test -n "${SERVICE}" || { echo "name the service: --build-arg SERVICE=returns|complaints|followup|notifier|refunds|console" >&2; exit 1; } \
    && python -m venv /opt/aftersales \
    && /opt/aftersales/bin/pip install -c constraints.txt ".[${SERVICE}]"

FROM python:3.11-slim-bookworm
ARG SERVICE
ENV PATH=/opt/aftersales/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    AFTERSALES_SERVICE=${SERVICE}
RUN groupadd --system --gid 10001 aftersales \
    && useradd --system --uid 10001 --gid aftersales --no-create-home aftersales
COPY --from=build /opt/aftersales /opt/aftersales
USER 10001:10001
EXPOSE 8000
# `aftersales run` stops gracefully on SIGTERM (exec form: the signal reaches it directly);
# without a service named it runs AFTERSALES_SERVICE, the one this image was built for.
ENTRYPOINT ["aftersales"]
CMD ["run"]
