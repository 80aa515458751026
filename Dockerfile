# Portcullis: a static binary on a distroless base. (Images are not built in
# this project's CI; the binary is, by make build.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=v0.1.0-dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X portcullis.dev/portcullis/cmd/portcullis/app.Version=${VERSION}" \
      -o /out/portcullis ./cmd/portcullis

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis /usr/local/bin/portcullis
USER 65532:65532
EXPOSE 8443 9443 9090
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config=/etc/portcullis/config/portcullis.yaml"]
