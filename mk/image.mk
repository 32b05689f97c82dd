# The operator image: `make image` builds vaultsync:dev on a machine where
# nothing is prepared (see mk/docker-engine.sh for the engine and base image).

IMAGE ?= vaultsync:dev
comma := ,
# Debian's client, not whatever newer one is first on PATH (it may want buildx).
DOCKER ?= /usr/bin/docker
# The proxy CA the host trusts for the package registries; a BuildKit secret only.
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE_CREATED := $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)

.PHONY: image docker-engine base-image

docker-engine: ## a Docker engine that answers (installs Debian's docker.io, starts dockerd)
	@DOCKER=$(DOCKER) CACHE=$(CACHE) mk/docker-engine.sh engine

base-image: ## the debian:bookworm-slim base, made with debootstrap when it cannot be pulled
	@DOCKER=$(DOCKER) CACHE=$(CACHE) mk/docker-engine.sh base

image: base-image ## build the operator image $(IMAGE)
	DOCKER_BUILDKIT=1 $(DOCKER) build --progress=plain \
		$(if $(wildcard $(CA_BUNDLE)),--secret id=ca$(comma)src=$(CA_BUNDLE)) \
		--build-arg VERSION=$(IMAGE_VERSION) \
		--build-arg REVISION=$(IMAGE_REVISION) \
		--build-arg CREATED=$(IMAGE_CREATED) \
		-t $(IMAGE) . >$(CACHE)/image-build.log 2>&1 \
		|| { tail -n 40 $(CACHE)/image-build.log; exit 1; }
	@# Each rebuild leaves the previous vaultsync:dev untagged; drop those, nothing else.
	@$(DOCKER) image prune -f --filter label=org.opencontainers.image.title=vaultsync >/dev/null
	@echo "built $(IMAGE): $$($(DOCKER) image inspect -f '{{.Size}}' $(IMAGE) | numfmt --to=si)B"

# tests/image runs this image; build it (cached layers make this a few seconds) first.
TEST_PREREQS += image
