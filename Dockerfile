# The vaultsync operator image.
#
# Build with `make image` (BuildKit; the base image is made locally when no
# registry can be reached). Two stages: the build stage makes a virtual
# environment from the pinned constraints; the final stage gets only Debian's
# python3, the CA certificates and that venv: no compiler, no pip, no caches.
#
# A proxy CA bundle, where one is needed to reach PyPI, comes in as the BuildKit
# secret `ca` and is never written to a layer.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/vaultsync \
    PATH=/opt/vaultsync/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180
RUN python3 -m venv "$VIRTUAL_ENV"
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the pins change.
# One trim keeps the image small: botocore carries the models of ~450 AWS services,
# of which vaultsync calls only these (the credential chain needs sts, sso and sso-oidc). The smoke
# check below imports every vaultsync module and creates those clients, so a trim
# that goes too far fails the build.
ARG BOTOCORE_SERVICES="secretsmanager sts sso sso-oidc"
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install -q -U pip \
    && python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' >/tmp/requirements.txt \
    && pip install -q -c constraints.txt -r /tmp/requirements.txt \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d \
        $(printf '! -name %s ' $BOTOCORE_SERVICES) -exec rm -rf {} +

# Then the package itself: no dependency resolution (the pins are already in) and no
# build isolation (its build requirements came with the dependencies), so no network.
# README.md is the package's long description; the wildcard lets a checkout without it build.
COPY README.m[d] ./
COPY operator ./operator
RUN pip install -q --no-deps --no-build-isolation . \
    && pip check \
    && find "$VIRTUAL_ENV" -name '*.dist-info' -prune -o -type d -name tests -prune -exec rm -rf {} + \
    && rm -f "$VIRTUAL_ENV"/bin/activate* "$VIRTUAL_ENV"/bin/Activate.ps1 \
    && pip uninstall -q -y pip setuptools wheel \
    && python -c 'import sys, boto3, importlib, pkgutil, vaultsync; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(vaultsync.__path__, "vaultsync.") if m.name != "vaultsync.__main__"]; \
[boto3.client(s, region_name="us-east-1") for s in sys.argv[1:]]' $BOTOCORE_SERVICES

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="vaultsync" \
      org.opencontainers.image.description="Kubernetes operator that keeps Secrets in sync with external vaults and rolls the workloads that use them" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 65532 vaultsync \
    && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin vaultsync
COPY --from=build /opt/vaultsync /opt/vaultsync
# The root filesystem may be mounted read-only: nothing writes bytecode, and
# anything that needs scratch space gets TMPDIR, which the chart mounts as an
# emptyDir (with `docker run --read-only`, add `--tmpfs /tmp`).
ENV PATH=/opt/vaultsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["vaultsync"]
CMD ["run"]
