# pinsync container image.
#
# Build:  docker build -t pinsync .
# Run:    docker run --rm pinsync run --config /etc/pinsync/pinsync.yaml
#
# The builder compiles a static binary (no cgo, no libc); the final stage is
# distroless "static" running as the numeric non-root user 65532, so that
# Kubernetes' runAsNonRoot can verify it. No shell, no package manager.

FROM golang:1.26 AS build
WORKDIR /src

# Modules first: this layer is reused while only sources change. go.mod
# replaces kfake (the embedded broker of the demo) with the patched copy in
# third_party/kfake, whose go.mod the download reads.
COPY go.mod go.sum ./
COPY third_party/kfake/go.mod third_party/kfake/
RUN go mod download

COPY . .
# TARGETOS/TARGETARCH are set by BuildKit for multi-platform builds
# (docker buildx build --platform ...); empty means "the builder's own".
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/pinsync ./cmd/pinsync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pinsync /pinsync
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/pinsync"]
CMD ["--help"]
