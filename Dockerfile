# The lanpeer peer image: lanpeer-base (a Debian bookworm rootfs imported from mmdebstrap) plus a
# venv holding lanpeer and its runtime dependencies.
#
# Build it with `python -m harness.image`, not by hand. harness/image.py stages the build
# context (this file plus wheelhouse/deps/, the locked runtime wheels that `pip download` fetched
# on the host, and wheelhouse/lanpeer/), passes BASE, and tags the result by a hash of its inputs
# (requirements.lock among them).
#
# The lab's engine has no registry, so this file is for the engine's classic builder (what the
# docker SDK uses): no "# syntax" line (BuildKit would pull its frontend image) and no
# BuildKit-only features such as RUN --mount or heredocs. FROM ${BASE} resolves from the local
# image store.
#
# Layer order is for the classic builder's cache: metadata and the dependency venv come first
# and are reused, so an edit under peer/ only reruns the last two steps.
ARG BASE=lanpeer-base:unset
FROM ${BASE}

LABEL lanpeer.image=1 lanpeer.role=peer
# PYTHONUNBUFFERED: tests follow container logs for progress markers; block-buffered stdout
# would hold them back and lose them on SIGKILL.
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["lanpeer"]
RUN mkdir -p /games /state

# Runtime dependencies, exactly as locked: requirements.txt is the runtime part of
# requirements.lock, and pip refuses any wheel whose hash the lock does not name. This layer
# changes only when that part does.
COPY wheelhouse/deps/ /tmp/wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --no-cache-dir --no-deps --require-hashes \
        --find-links=/tmp/wheelhouse --requirement /tmp/wheelhouse/requirements.txt \
 && rm -rf /tmp/wheelhouse

# lanpeer itself; pip check fails the build if pyproject.toml wants a dependency not installed.
COPY wheelhouse/lanpeer/ /tmp/wheelhouse/
RUN pip install --no-index --no-cache-dir --no-deps --find-links=/tmp/wheelhouse lanpeer \
 && pip check \
 && rm -rf /tmp/wheelhouse
