# syntax=docker/dockerfile:1
# Image of the metalplane control plane: one image, one process per container
# (`metalplane migrate`, `metalplane api`, `metalplane worker <queue>`), see docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim

##### build: install the project and its dependencies into a venv #####
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Only what `pip install .` needs (see .dockerignore); tests, docs and the dev venv stay out.
COPY . .
RUN /opt/venv/bin/pip install .

##### runtime #####
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METALPLANE_DATA_DIR=/var/lib/metalplane \
    METALPLANE_IMAGE_STORE_DIR=/var/lib/metalplane/images \
    METALPLANE_API_HOST=0.0.0.0 \
    METALPLANE_API_PORT=8000

# Unprivileged user; the image store directory is created and owned here so that a named
# volume mounted on it is initialised with this ownership.
RUN groupadd --system --gid 10001 metalplane \
    && useradd --system --uid 10001 --gid metalplane --home-dir /var/lib/metalplane \
        --no-create-home --shell /usr/sbin/nologin metalplane \
    && mkdir -p /var/lib/metalplane/images \
    && chown -R metalplane:metalplane /var/lib/metalplane

COPY --from=build /opt/venv /opt/venv

USER metalplane:metalplane
WORKDIR /var/lib/metalplane
EXPOSE 8000
ENTRYPOINT ["metalplane"]
CMD ["--help"]
