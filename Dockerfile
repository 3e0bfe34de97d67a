# CoreDNS with the consul plugin: a static binary in a distroless image,
# running as a non-root user (UID 65532). Build it (docs/deployment.md):
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     -t REGISTRY.example/coredns-consul:$(git describe --tags --always --dirty) .
# .git is not in the build context (.dockerignore), so the version comes in
# as a build argument; without one the binary says "dev", as `make build`
# does outside a git checkout.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same -ldflags as the Makefile's LDFLAGS, so that `coredns -version`
# reads the same from the image as from `make build` (test/e2e/deploy_test.go
# compares the two).
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X github.com/coredns-consul/coredns-consul/plugin/consul.Version=${VERSION} -X github.com/coredns/coredns/coremain.GitCommit=coredns-consul-${VERSION}" \
      -o /out/coredns ./cmd/coredns
# The default Corefile is the DNS-server one on port 1053 instead of 53: a
# non-root process binds 53 only where the runtime lowered
# net.ipv4.ip_unprivileged_port_start. Map 53 to it: docker run -p 53:1053/udp.
RUN mkdir -p /out/etc/coredns /out/var/lib/coredns \
 && sed 's/^\(\S*\):53 {$/\1:1053 {/' deploy/dns-server/Corefile > /out/etc/coredns/Corefile \
 && grep -q ':1053 {' /out/etc/coredns/Corefile

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coredns /coredns
COPY --from=build /out/etc/coredns/Corefile /etc/coredns/Corefile
# Where the Corefile keeps its snapshot file; mount a volume here to keep it
# across container restarts.
COPY --from=build --chown=65532:65532 /out/var/lib/coredns /var/lib/coredns
USER nonroot:nonroot
EXPOSE 1053 1053/udp 9153 8181 8182
ENTRYPOINT ["/coredns"]
CMD ["-conf", "/etc/coredns/Corefile"]
