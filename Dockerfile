# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so the final image needs no libc.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bridge ./cmd/bridge

# Run: distroless static, non-root (uid 65532), nothing but the binary and CA certificates.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bridge /bridge
USER 65532:65532
# The embedded NATS server (used only without BRIDGE_NATS_URL) stores in /data and listens on all
# interfaces inside the container.
# BRIDGE_LISTEN_ADDR is set, so the bridge listens on every interface of the container even without a
# token (set BRIDGE_AUTH_TOKENS or Entra ID before publishing the port beyond the host).
ENV BRIDGE_EMBEDDED_NATS_DIR=/data/nats \
    BRIDGE_EMBEDDED_NATS_ADDR=0.0.0.0:4222 \
    BRIDGE_LISTEN_ADDR=:8080
EXPOSE 8080 4222
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/bridge", "healthcheck"]
ENTRYPOINT ["/bridge"]
