# CoreDNS with the consul plugin: a static binary in a distroless image,
# running as a non-root user. Build: docker build -t coredns-consul .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/coredns-consul/coredns-consul/plugin/consul.Version=${VERSION} -X github.com/coredns/coredns/coremain.GitCommit=coredns-consul-${VERSION}" \
      -o /out/coredns ./cmd/coredns

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coredns /coredns
COPY deploy/dns-server/Corefile /etc/coredns/Corefile
USER nonroot:nonroot
EXPOSE 53 53/udp 9153 8181 8080
ENTRYPOINT ["/coredns"]
CMD ["-conf", "/etc/coredns/Corefile"]
